"""Every device's feed in the Redis session tier: the actors' ``DeviceFeed`` port, and what
the stream hub of each instance reads.

Keys (all under ``<prefix>:<tenant>:device:<deviceId>:``):

* ``feed`` — a Redis Stream, the device's bounded history (exact ``MAXLEN`` =
  ``BFF_SSE_HISTORY``, dropped ``BFF_SSE_HISTORY_TTL_S`` after its last event). Its entry ids
  are the SSE ``id:`` values: strictly increasing per device, whichever instance appended.
* ``feed:seen`` — the keys of the items appended lately (a sorted set bounded to four
  histories, same TTL): the same item is appended once, however many instances deliver it.
* ``sse:owner`` — ``"<node> <token>"``: the one live stream of the device and the instance
  holding it; expires unless that instance renews it (a crashed instance's streams lapse).
* ``sse:opens`` — streams opened in the current minute (the loop guard).

One Lua script per operation keeps each atomic: an append dedupes, adds, reads the owner and
publishes once per holding instance on ``<prefix>:<tenant>:sse:node:<node>`` —
``{"to": [[device, prev, id], ...], "item": {...}}``, where ``prev`` is the entry before ``id``
so the receiver sees a gap (a lost message) and reads the feed instead. A claim takes the owner
key and tells the previous holder ``{"replace": [device, token]}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.ports import StreamClaim, StreamGrant, StreamsThrottled
from edge.redis_tier import Client, RedisTier, text
from schemas.sse import FeedItem

FeedEntry = tuple[str, FeedItem]  # (feed id, item)
SEEN_FACTOR = 4
OPENS_WINDOW_S = 60

_APPEND = """
local n = #KEYS / 3
local key, item, maxlen, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, seen_max, chan = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local nodes, order, appended = {}, {}, 0
for i = 0, n - 1 do
  local feed, seen, owner = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  if redis.call('ZADD', seen, 'NX', now, key) == 1 then
    if redis.call('ZCARD', seen) > seen_max then
      redis.call('ZREMRANGEBYRANK', seen, 0, -seen_max - 1)
    end
    redis.call('EXPIRE', seen, ttl)
    local last = redis.call('XREVRANGE', feed, '+', '-', 'COUNT', 1)
    local prev = '0-0'
    if #last > 0 then prev = last[1][1] end
    local id = redis.call('XADD', feed, 'MAXLEN', maxlen, '*', 'e', item)
    redis.call('EXPIRE', feed, ttl)
    appended = appended + 1
    local held = redis.call('GET', owner)
    if held then
      local node = string.sub(held, 1, (string.find(held, ' ', 1, true) or 1) - 1)
      if node ~= '' then
        if not nodes[node] then nodes[node] = {}; table.insert(order, node) end
        table.insert(nodes[node], {ARGV[8 + i], prev, id})
      end
    end
  end
end
for _, node in ipairs(order) do
  redis.call('PUBLISH', chan .. node,
    '{"to":' .. cjson.encode(nodes[node]) .. ',"item":' .. item .. '}')
end
return appended
"""

_CLAIM = """
local opens = redis.call('INCR', KEYS[2])
if opens == 1 or redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
if opens > tonumber(ARGV[4]) then
  return {'throttled', math.max(redis.call('TTL', KEYS[2]), 1)}
end
local value = ARGV[1] .. ' ' .. ARGV[2]
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], value, 'EX', ARGV[3])
local replaced = 0
if old and old ~= value then
  local sp = string.find(old, ' ', 1, true)
  if sp then
    redis.call('PUBLISH', ARGV[6] .. string.sub(old, 1, sp - 1),
      '{"replace":' .. cjson.encode({ARGV[7], string.sub(old, sp + 1)}) .. '}')
    replaced = 1
  end
end
local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
local last = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
if #first == 0 then return {'granted', replaced, '', '0-0'} end
return {'granted', replaced, first[1][1], last[1][1]}
"""

_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local sp = string.find(held, ' ', 1, true)
  if sp and string.sub(held, sp + 1) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
end
return 0
"""

# Renew the streams an instance holds: KEYS = owners (n), then revocation markers (n);
# ARGV = ttl, then the owner values. A vanished owner key (the tier restarted empty) is taken
# back (and reported: what was appended meanwhile was published to nobody); one holding
# another value was replaced. Returns {replaced, revoked, taken back} indices.
_RENEW = """
local n = #KEYS / 2
local lost, revoked, taken = {}, {}, {}
for i = 1, n do
  local held = redis.call('GET', KEYS[i])
  if held == ARGV[i + 1] or not held then
    redis.call('SET', KEYS[i], ARGV[i + 1], 'EX', ARGV[1])
    if not held then table.insert(taken, i) end
  else
    table.insert(lost, i)
  end
  if redis.call('EXISTS', KEYS[n + i]) == 1 then table.insert(revoked, i) end
end
return {lost, revoked, taken}
"""

_item_encoder = msgspec.json.Encoder()
_item_decoder = msgspec.json.Decoder(FeedItem)


def parse_id(value: str) -> tuple[int, int] | None:
    """A feed id (``<ms>-<seq>``) as a comparable pair, or ``None`` if it is not one."""
    ms, sep, seq = value.partition("-")
    if not sep or not ms.isdigit() or not seq.isdigit() or len(value) > 41:
        return None
    return int(ms), int(seq)


def id_after(a: str, b: str) -> bool:
    """Whether feed id ``a`` comes after ``b`` (both well formed)."""
    return (parse_id(a) or (0, 0)) > (parse_id(b) or (0, 0))


class Held(msgspec.Struct, frozen=True):
    """A stream this instance holds, as the renewal sees it."""

    tenant: str
    device_id: str
    token: str
    session_id: str


class Renewal(msgspec.Struct, frozen=True):
    replaced: list[Held]
    revoked: list[Held]
    taken_back: list[Held]  # owner key had vanished: the stream must read its feed


class RedisDeviceFeed:
    """The ``DeviceFeed`` port over the session tier, plus the reads the stream hub needs."""

    def __init__(
        self,
        tier: RedisTier,
        revoked_key: Any,
        *,
        history: int = 256,
        ttl_s: float = 86400.0,
        owner_ttl_s: float = 60.0,
        opens_per_minute: int = 20,
    ) -> None:
        self.tier = tier
        self._revoked_key = revoked_key  # (tenant, session id) → the session's revocation key
        self.history = history
        self.ttl_s = max(1, int(ttl_s))
        self.owner_ttl_s = max(1, int(owner_ttl_s))
        self.opens_per_minute = opens_per_minute
        self._scripts: dict[str, Any] = {}

    # --- keys and channels ---

    def feed_key(self, tenant: str, device_id: str) -> str:
        return self.tier.key(tenant, "device", device_id, "feed")

    def owner_key(self, tenant: str, device_id: str) -> str:
        return self.tier.key(tenant, "device", device_id, "sse", "owner")

    def channel_prefix(self, tenant: str) -> str:
        """Followed by a node id: where that instance hears about the tenant's streams."""
        return self.tier.key(tenant, "sse", "node", "")

    def node_pattern(self, node: str) -> str:
        """The pattern one instance subscribes to: its channel of every tenant."""
        escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in self.tier.prefix)
        node_escaped = "".join(f"\\{c}" if c in "*?[]\\" else c for c in node)
        return f"{escaped}:*:sse:node:{node_escaped}"

    def tenant_of(self, channel: str, node: str) -> str | None:
        """The tenant a node channel belongs to (the channel names it: never the payload)."""
        head, tail = f"{self.tier.prefix}:", f":sse:node:{node}"
        if not channel.startswith(head) or not channel.endswith(tail):
            return None
        tenant = channel[len(head) : len(channel) - len(tail)]
        return tenant if tenant and ":" not in tenant else None

    # --- the port ---

    async def append(self, tenant: str, device_ids: Sequence[str], item: FeedItem) -> int:
        devices = list(dict.fromkeys(device_ids))
        if not devices:
            return 0
        keys: list[str] = []
        for device in devices:
            feed = self.feed_key(tenant, device)
            keys += [feed, f"{feed}:seen", self.owner_key(tenant, device)]
        args: list[str | int] = [
            item.key,
            _item_encoder.encode(item).decode(),
            self.history,
            self.ttl_s,
            int(time.time() * 1000),
            self.history * SEEN_FACTOR,
            self.channel_prefix(tenant),
            *devices,
        ]
        return int(await self._eval("append", _APPEND, keys, args))

    async def claim(self, tenant: str, device_id: str, claim: StreamClaim) -> StreamGrant:
        keys = [
            self.owner_key(tenant, device_id),
            self.tier.key(tenant, "device", device_id, "sse", "opens"),
            self.feed_key(tenant, device_id),
        ]
        args: list[str | int] = [
            claim.node,
            claim.token,
            self.owner_ttl_s,
            self.opens_per_minute,
            OPENS_WINDOW_S,
            self.channel_prefix(tenant),
            device_id,
        ]
        reply = await self._eval("claim", _CLAIM, keys, args)
        if text(reply[0]) == "throttled":
            raise StreamsThrottled(int(reply[1]))
        replaced, first, last = bool(int(reply[1])), text(reply[2]), text(reply[3])
        return grant(claim.after, first, last, replaced)

    async def release(self, tenant: str, device_id: str, token: str) -> None:
        await self._eval("release", _RELEASE, [self.owner_key(tenant, device_id)], [token])

    # --- the hub's reads ---

    async def read_after(
        self, tenant: str, device_id: str, after: str, *, limit: int | None = None
    ) -> list[FeedEntry]:
        """The feed's entries after ``after`` (exclusive), oldest first, at most a history."""
        count = limit or self.history
        key = self.feed_key(tenant, device_id)

        async def read(r: Client) -> Any:
            return await r.xrange(key, min=f"({after}", max="+", count=count)

        rows = await self.tier.run(read)
        return [entry for entry in map(_entry, rows) if entry is not None]

    async def renew(self, node: str, held: Sequence[Held]) -> Renewal:
        """Renew what ``node`` holds; report the streams replaced elsewhere and the ones whose
        session was revoked meanwhile."""
        if not held:
            return Renewal(replaced=[], revoked=[], taken_back=[])
        keys = [self.owner_key(h.tenant, h.device_id) for h in held]
        keys += [self._revoked_key(h.tenant, h.session_id) for h in held]
        args: list[str | int] = [self.owner_ttl_s, *(f"{node} {h.token}" for h in held)]
        lost, revoked, taken = await self._eval("renew", _RENEW, keys, args)
        return Renewal(
            replaced=[held[int(i) - 1] for i in lost],
            revoked=[held[int(i) - 1] for i in revoked],
            taken_back=[held[int(i) - 1] for i in taken],
        )

    async def _eval(self, name: str, lua: str, keys: list[str], args: list[str | int]) -> Any:
        async def run(r: Client) -> Any:
            script = self._scripts.get(name)
            if script is None:
                script = self._scripts[name] = r.register_script(lua)
            return await script(keys=keys, args=args)

        return await self.tier.run(run)


def grant(after: str | None, first: str, last: str, replaced: bool) -> StreamGrant:
    """Where a stream starts: after ``after`` when the feed still holds everything since then
    (its oldest entry is not newer than ``after``, and ``after`` is not past its newest — a
    feed that restarted empty); otherwise live, with a ``history_gap`` first when the client
    asked to resume."""
    if after is None:
        return StreamGrant(resume_from=last, gap=False, replaced=replaced)
    held = first != "" and not id_after(first, after) and not id_after(after, last)
    if held:
        return StreamGrant(resume_from=after, gap=False, replaced=replaced)
    return StreamGrant(resume_from=last, gap=True, replaced=replaced)


def decode_item(raw: bytes | str) -> FeedItem | None:
    try:
        return _item_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _entry(row: Any) -> FeedEntry | None:
    entry_id, fields = row
    raw = fields.get(b"e") if isinstance(fields, dict) else None
    item = decode_item(raw) if raw is not None else None
    return None if item is None else (text(entry_id), item)
