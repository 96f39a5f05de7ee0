"""``BackofficeSession`` in the Redis session tier, and the revocation markers every instance reads.

Keys (all under ``<prefix>:<tenant>:``):

* ``session:<sid>`` — the session blob (JSON), TTL 12 h; written by the DeviceActor on the
  device's first authenticated call.
* ``revoked:<sid>`` — present once the session was revoked or signed out; every instance rejects
  the session's tokens with SESSION_EXPIRED while it exists (TTL 12 h ≥ any token's lifetime).
  Its value names the device that held the session (``device:<did>``; ``1`` when unknown), so
  every instance can still tell which device to notify after the blob is gone.
* ``device:<did>:session`` — the device's current session id.
* ``operator:<op>:devices`` — the devices where the operator has a session (a fallback for
  ``user.disabled``, which names the sessions themselves); a device leaves it when the
  operator's session there closes, unless the device's current session is still theirs.
"""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec
import redis.exceptions

from edge.redis_tier import Client, RedisTier, text
from schemas.sessions import BackofficeSession

SESSION_TTL_S = 12 * 3600
UNKNOWN_HOLDER = b"1"  # a revocation marker whose session's device is not known
HOLDER_PREFIX = "device:"
WATCH_ATTEMPTS = 5


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(BackofficeSession)


def _holder_value(device_id: str) -> bytes:
    return f"{HOLDER_PREFIX}{device_id}".encode()


def _holder(marker: object) -> str | None:
    """The device a revocation marker names, if it names one."""
    value = "" if marker is None else text(marker)
    if not value.startswith(HOLDER_PREFIX):
        return None
    return value.removeprefix(HOLDER_PREFIX) or None


def _blob(raw: object) -> BackofficeSession | None:
    """A stored session blob, or ``None`` (absent or unreadable: the blob is only a hint)."""
    if not isinstance(raw, bytes | str):
        return None
    try:
        return _decoder.decode(raw)
    except msgspec.DecodeError:
        return None


class RevokedSessions:
    """This process's own memory of the sessions it closed (bounded, 12 h): while the session
    tier is down, the auth chain still rejects what this instance knows to be revoked."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._until: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._capacity = capacity

    def add(self, tenant: str, sid: str) -> None:
        self._until[(tenant, sid)] = time.monotonic() + SESSION_TTL_S
        self._until.move_to_end((tenant, sid))
        while len(self._until) > self._capacity:
            self._until.popitem(last=False)

    def __contains__(self, key: tuple[str, str]) -> bool:
        until = self._until.get(key)
        return until is not None and until > time.monotonic()


class SessionStore:
    """The session tier's adapter: the actors' ``SessionTier`` port, and what the auth chain
    reads. Built once per process (with its process memory of revoked sessions) and shared."""

    def __init__(self, tier: RedisTier, revoked: RevokedSessions) -> None:
        self.tier = tier
        self.revoked = revoked

    def session_key(self, tenant: str, sid: str) -> str:
        return self.tier.key(tenant, "session", sid)

    def revoked_key(self, tenant: str, sid: str) -> str:
        return self.tier.key(tenant, "revoked", sid)

    def device_key(self, tenant: str, did: str) -> str:
        return self.tier.key(tenant, "device", did, "session")

    def operator_key(self, tenant: str, operator_id: str) -> str:
        return self.tier.key(tenant, "operator", operator_id, "devices")

    async def open(self, session: BackofficeSession) -> None:
        t = session.tenant
        blob = _encoder.encode(session)

        async def write(r: Client) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.session_key(t, session.session_id), blob, ex=SESSION_TTL_S)
            pipe.set(self.device_key(t, session.device_id), session.session_id, ex=SESSION_TTL_S)
            pipe.sadd(self.operator_key(t, session.operator_id), session.device_id)
            pipe.expire(self.operator_key(t, session.operator_id), SESSION_TTL_S)
            await pipe.execute()

        await self.tier.run(write)

    async def close(self, tenant: str, sid: str, device_id: str) -> None:
        """Mark ``sid`` revoked (all instances reject it from now on; the marker remembers
        ``device_id``) and forget it: its blob, the device's reference to it, and the device
        in its operator's index unless the device's current session is still theirs."""
        self.revoked.add(tenant, sid)  # first, so this instance rejects it even if Redis is down

        async def write(r: Client) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.revoked_key(tenant, sid), _holder_value(device_id), ex=SESSION_TTL_S)
            pipe.get(self.session_key(tenant, sid))
            pipe.delete(self.session_key(tenant, sid))
            _, raw, _ = await pipe.execute()
            closed = _blob(raw)
            await self._release(r, tenant, sid, device_id, closed.operator_id if closed else None)

        await self.tier.run(write)

    async def _release(
        self, r: Client, tenant: str, sid: str, device_id: str, operator_id: str | None
    ) -> None:
        """Drop the device's reference to ``sid`` and, unless the device's current session is
        ``operator_id``'s, the device from that operator's index — one transaction, watching
        the device's reference so a session opening meanwhile is never un-indexed."""
        device_key = self.device_key(tenant, device_id)
        async with r.pipeline(transaction=True) as pipe:
            for _ in range(WATCH_ATTEMPTS):
                try:
                    await pipe.watch(device_key)
                    raw = await pipe.get(device_key)
                    current = None if raw is None else text(raw)
                    holder: BackofficeSession | None = None
                    if current is not None and current != sid and operator_id is not None:
                        holder = _blob(await pipe.get(self.session_key(tenant, current)))
                    pipe.multi()  # type: ignore[no-untyped-call]  # redis-py untyped
                    if current == sid:
                        pipe.delete(device_key)
                    if operator_id is not None and (
                        holder is None or holder.operator_id != operator_id
                    ):
                        pipe.srem(self.operator_key(tenant, operator_id), device_id)
                    await pipe.execute()
                    return
                except redis.exceptions.WatchError:
                    continue  # the device's session changed meanwhile: look again

    async def revoke(self, tenant: str, sid: str) -> str | None:
        """Mark ``sid`` revoked first — from ``(tenant, sid)`` alone, in the same transaction
        that reads its blob — then return the device holding it (the blob's, or the one a
        close left in the marker), or ``None`` if this tier never knew the session."""
        self.revoked.add(tenant, sid)
        marker = self.revoked_key(tenant, sid)

        async def write(r: Client) -> str | None:
            pipe = r.pipeline(transaction=True)
            pipe.set(marker, UNKNOWN_HOLDER, nx=True, ex=SESSION_TTL_S)
            pipe.get(marker)
            pipe.get(self.session_key(tenant, sid))
            _, value, raw = await pipe.execute()
            holder = _holder(value)
            if holder is None and (session := _blob(raw)) is not None:
                holder = session.device_id
                await r.set(marker, _holder_value(holder), ex=SESSION_TTL_S, xx=True)
            return holder

        return await self.tier.run(write)

    async def current(self, tenant: str, device_id: str) -> str | None:
        raw = await self.tier.run(lambda r: r.get(self.device_key(tenant, device_id)))
        return None if raw is None else text(raw)

    async def devices_of(self, tenant: str, operator_id: str) -> list[str]:
        members = await self.tier.run(lambda r: r.smembers(self.operator_key(tenant, operator_id)))
        return sorted(text(m) for m in members)
