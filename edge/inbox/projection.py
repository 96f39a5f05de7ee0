"""The ``AlertInbox`` and ``AISuggestionInbox`` projections in the Redis cache tier: the
``Inboxes`` port the PropertyActor keeps up to date from domain events, and what the inbox
routes read (and fill after a read-through).

Keys, per tenant, property and inbox (``alerts`` | ``suggestions``), all under
``<prefix>:<tenant>:property:<propertyId>:inbox:<inbox>``:

* (the base key) — hash: item id → the item's JSON (``AlertItem`` / ``SuggestionItem``);
* ``:order`` — sorted set: item id → raised/created time (ms), to evict the oldest past
  ``max_items``;
* ``:gone`` — sorted set: item id → when it was resolved/invalidated/decided (ms). A tombstone,
  so that a redelivered ``raised``/``created`` event, or a read-through that raced the event,
  cannot bring the item back;
* ``:acks`` — hash (alerts only): alert id → the ``AlertAck`` the BFF recorded;
* ``:loaded`` — marker: the inbox holds the upstream's whole list (read through once), kept
  current by events since; without it a read goes to the upstream.

Every write refreshes the TTL (``ttl_s``) of the first four together, so they expire together.
The loaded marker gets its TTL only from the read-through that sets it: at least every ``ttl_s``
the suggestions are read through again and the inbox reconciled with ai-orchestrator (an event
lost on the way cannot leave it wrong for longer). Each write is one Lua script (atomic, one
round trip) under the tier's deadline; an outage raises ``TierUnavailable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import msgspec

from edge.inbox.items import alert_from_event, live, suggestion_from_event, with_ack
from edge.redis_tier import Client, RedisTier, text
from schemas.inbox import AlertAck, AlertItem, AlertRaised, SuggestionCreated, SuggestionItem

log = logging.getLogger("bff.inbox")
Inbox = Literal["alerts", "suggestions"]
T = TypeVar("T")
MAX_ITEMS = 500

# KEYS: items, order, gone, acks, loaded. Shared tail: evict the oldest past ARGV max, refresh
# the TTL of every key but the loaded marker (only a read-through sets that one).
_TAIL = """
local function finish(max, ttl)
  local extra = redis.call('ZCARD', KEYS[2]) - max
  if extra > 0 then
    local evicted = redis.call('ZPOPMIN', KEYS[2], extra)
    for i = 1, #evicted, 2 do
      redis.call('HDEL', KEYS[1], evicted[i])
      redis.call('HDEL', KEYS[4], evicted[i])
    end
  end
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""

# ARGV: id, score, item, max, ttl. An item held already stays as it is (a redelivered event
# carries nothing new, and the upstream's copy is richer). Returns 1 when stored, 0 when held
# already or a tombstone refused it.
_PUT = (
    _TAIL
    + """
local stored = 0
if not redis.call('ZSCORE', KEYS[3], ARGV[1]) then
  stored = redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[3])
  if stored == 1 then redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1]) end
end
finish(tonumber(ARGV[4]), tonumber(ARGV[5]))
return stored
"""
)

# ARGV: id, now, max, ttl. Tombstones older than the TTL, or past ``max``, are forgotten.
_DROP = (
    _TAIL
    + """
local now, max, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
if redis.call('ZCARD', KEYS[3]) > max then
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -max - 1)
end
finish(max, ttl)
return 1
"""
)

# ARGV: id, ack, max, ttl. Only for an alert the inbox holds (Postgres holds every ack).
_ACK = (
    _TAIL
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
finish(tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
"""
)

# ARGV: cutoff, mark, max, ttl, then (id, score, item) per item of the upstream's list. The list
# is the truth as of ``cutoff``: items older than that which it lacks are gone; newer ones may
# have arrived by event after the upstream answered, and stay.
_FILL = (
    _TAIL
    + """
local keep = {}
for i = 5, #ARGV, 3 do
  keep[ARGV[i]] = true
  if not redis.call('ZSCORE', KEYS[3], ARGV[i]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
    redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i])
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])) do
  if not keep[id] then
    redis.call('HDEL', KEYS[1], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[2], id)
  end
end
if ARGV[2] == '1' then redis.call('SET', KEYS[5], '1', 'PX', ARGV[4]) end
finish(tonumber(ARGV[3]), tonumber(ARGV[4]))
return 1
"""
)

# How much older than the read-through's start an item must be for the upstream's list to
# prove it gone (the upstream's clock against ours).
CLOCK_SKEW_S = 30.0

_encoder = msgspec.json.Encoder()
_alert = msgspec.json.Decoder(AlertItem)
_suggestion = msgspec.json.Decoder(SuggestionItem)
_ack = msgspec.json.Decoder(AlertAck)


class RedisInboxes:
    """The ``Inboxes`` port over the cache tier, plus the routes' reads and fills."""

    def __init__(self, cache: RedisTier, *, ttl_s: float, max_items: int = MAX_ITEMS) -> None:
        self._cache = cache
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._max = max_items
        self._scripts: dict[str, Any] = {}

    def keys(self, tenant: str, property_id: str, inbox: Inbox) -> list[str]:
        """items, order, gone, acks, loaded: every key carries the tenant (``RedisTier.key``)."""
        base = self._cache.key(tenant, "property", property_id, "inbox", inbox)
        return [base, f"{base}:order", f"{base}:gone", f"{base}:acks", f"{base}:loaded"]

    # --- the Inboxes port (the PropertyActor) ------------------------------------------------

    async def put_alert(self, tenant: str, alert: AlertRaised) -> None:
        item = alert_from_event(alert)
        await self._put(tenant, item.property_id, "alerts", item.alert_id, item.raised_at, item)

    async def drop_alert(self, tenant: str, property_id: str, alert_id: str) -> None:
        await self._drop(tenant, property_id, "alerts", alert_id)

    async def mark_acknowledged(self, tenant: str, ack: AlertAck) -> None:
        keys = self.keys(tenant, ack.property_id, "alerts")
        args = [ack.alert_id, _encoder.encode(ack), self._max, self._ttl_ms]
        await self._eval("ack", _ACK, keys, args)

    async def put_suggestion(self, tenant: str, suggestion: SuggestionCreated) -> None:
        item = suggestion_from_event(suggestion)
        sid = item.suggestion_id
        await self._put(tenant, item.property_id, "suggestions", sid, item.created_at, item)

    async def drop_suggestion(self, tenant: str, property_id: str, suggestion_id: str) -> None:
        await self._drop(tenant, property_id, "suggestions", suggestion_id)

    # --- reads and fills (the inbox routes) --------------------------------------------------

    async def alerts(self, tenant: str, property_id: str) -> list[AlertItem]:
        """The alerts the inbox holds, with the acknowledgements it was told of; unordered."""
        items_key, _, _, acks_key, _ = self.keys(tenant, property_id, "alerts")

        async def read(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hgetall(items_key)
                pipe.hgetall(acks_key)
                result: list[Any] = await pipe.execute()
                return result

        raw_items, raw_acks = await self._cache.run(read)
        acks = _decoded(raw_acks, _ack)
        return [with_ack(item, acks.get(aid)) for aid, item in _decoded(raw_items, _alert).items()]

    async def suggestions(self, tenant: str, property_id: str) -> tuple[bool, list[SuggestionItem]]:
        """(loaded, the suggestions that have not expired, newest first). Not loaded: the
        inbox holds only what events brought, and the caller should read through."""
        items_key, order_key, _, _, loaded_key = self.keys(tenant, property_id, "suggestions")

        async def read(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.exists(loaded_key)
                pipe.hgetall(items_key)
                result: list[Any] = await pipe.execute()
                return result

        loaded, raw = await self._cache.run(read)
        held = _decoded(raw, _suggestion)
        now = datetime.now(UTC)
        kept = live(held.values(), now)
        expired = sorted(set(held) - {item.suggestion_id for item in kept})
        if expired:  # forget them now rather than at the TTL (no tombstone: they stay expired)
            await self._cache.run(lambda r: _forget(r, items_key, order_key, expired))
        return bool(loaded), kept

    async def fill_alerts(
        self, tenant: str, property_id: str, items: Sequence[AlertItem], started: float
    ) -> None:
        """notification-service's list, read at ``started`` (epoch s): the inbox becomes it."""
        await self._fill(tenant, property_id, "alerts", items, started, mark=False)

    async def fill_suggestions(
        self, tenant: str, property_id: str, items: Sequence[SuggestionItem], started: float
    ) -> None:
        """ai-orchestrator's list of open suggestions, read at ``started`` (epoch s): the inbox
        becomes it and is marked loaded, so later reads are served from it."""
        await self._fill(tenant, property_id, "suggestions", items, started, mark=True)

    # --- the scripts ---------------------------------------------------------------------------

    async def _put(
        self, tenant: str, pid: str, inbox: Inbox, item_id: str, at: datetime, item: Any
    ) -> None:
        args = [item_id, _ms(at), _encoder.encode(item), self._max, self._ttl_ms]
        await self._eval("put", _PUT, self.keys(tenant, pid, inbox), args)

    async def _drop(self, tenant: str, pid: str, inbox: Inbox, item_id: str) -> None:
        args = [item_id, int(time.time() * 1000), self._max, self._ttl_ms]
        await self._eval("drop", _DROP, self.keys(tenant, pid, inbox), args)

    async def _fill(
        self,
        tenant: str,
        pid: str,
        inbox: Inbox,
        items: Sequence[AlertItem] | Sequence[SuggestionItem],
        started: float,
        *,
        mark: bool,
    ) -> None:
        cutoff = int((started - CLOCK_SKEW_S) * 1000)
        args: list[Any] = [cutoff, "1" if mark else "0", self._max, self._ttl_ms]
        for item in items[: self._max]:
            if isinstance(item, AlertItem):
                args += [item.alert_id, _ms(item.raised_at), _encoder.encode(item)]
            else:
                args += [item.suggestion_id, _ms(item.created_at), _encoder.encode(item)]
        await self._eval("fill", _FILL, self.keys(tenant, pid, inbox), args)

    async def _eval(self, name: str, lua: str, keys: list[str], args: list[Any]) -> Any:
        async def run(r: Client) -> Any:
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = r.register_script(lua)
            return await script(keys=keys, args=args, client=r)

        return await self._cache.run(run)


async def _forget(r: Client, items_key: str, order_key: str, ids: list[str]) -> None:
    async with r.pipeline(transaction=True) as pipe:
        pipe.hdel(items_key, *ids)
        pipe.zrem(order_key, *ids)
        await pipe.execute()


def _decoded(raw: dict[Any, Any], decoder: msgspec.json.Decoder[T]) -> dict[str, T]:
    """A hash's values decoded by field; an entry this version cannot read is skipped (it
    goes at the next fill, eviction or TTL)."""
    found: dict[str, T] = {}
    for key, value in raw.items():
        try:
            found[text(key)] = decoder.decode(value)
        except msgspec.DecodeError:
            log.warning("unreadable inbox entry skipped", extra={"entry": text(key)[:128]})
    return found


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
