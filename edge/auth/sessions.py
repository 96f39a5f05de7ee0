"""``BackofficeSession`` in the Redis session tier, and the revocation markers every instance reads.

Keys (all under ``<prefix>:<tenant>:``):

* ``session:<sid>`` — the session blob (JSON), TTL 12 h; written by the DeviceActor on the
  device's first authenticated call.
* ``revoked:<sid>`` — present once the session was revoked or signed out; every instance rejects
  the session's tokens with SESSION_EXPIRED while it exists (TTL 12 h ≥ any token's lifetime).
* ``device:<did>:session`` — the device's current session id.
* ``operator:<op>:devices`` — the devices an operator has sessions on (for ``user.disabled``).
"""

from __future__ import annotations

import time
from collections import OrderedDict

import msgspec

from edge.redis_tier import Client, RedisTier, text
from schemas.sessions import BackofficeSession

SESSION_TTL_S = 12 * 3600


_encoder = msgspec.json.Encoder()


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
        """Mark ``sid`` revoked (all instances reject it from now on) and drop its blob."""
        self.revoked.add(tenant, sid)  # first, so this instance rejects it even if Redis is down

        async def write(r: Client) -> None:
            pipe = r.pipeline(transaction=True)
            pipe.set(self.revoked_key(tenant, sid), b"1", ex=SESSION_TTL_S)
            pipe.delete(self.session_key(tenant, sid))
            await pipe.execute()
            current = await r.get(self.device_key(tenant, device_id))
            if current is not None and text(current) == sid:
                await r.delete(self.device_key(tenant, device_id))

        await self.tier.run(write)

    async def current(self, tenant: str, device_id: str) -> str | None:
        raw = await self.tier.run(lambda r: r.get(self.device_key(tenant, device_id)))
        return None if raw is None else text(raw)

    async def devices_of(self, tenant: str, operator_id: str) -> list[str]:
        members = await self.tier.run(lambda r: r.smembers(self.operator_key(tenant, operator_id)))
        return sorted(text(m) for m in members)
