"""Operator preferences and rendered shortcut maps in the Redis cache tier.

Keys (all with a TTL; the tenant in every one)::

    <prefix>:<tenant>:operator:<op>:preferences   the operator's preferences (MirroredPreferences)
    <prefix>:<tenant>:operator:<op>:shortcuts     the rendered KeyboardShortcutMap, stamped with
                                                  the help generation it was rendered under
    <prefix>:<tenant>:shortcuts:generation        the tenant's shortcut-help generation

A rendered map is valid while the tenant's generation is the one it was rendered under and the
cached preferences are the version it was rendered from. So a theme published for the tenant
(one ``INCR``: :meth:`PreferencesCache.invalidate_tenant`, the ``ShortcutHelp`` port) or a
preferences change makes every affected map stale at once, without finding the maps, and a map
rendered from old preferences while they changed can never be read as current. The generation
key outlives every map rendered under an older value (its TTL is a multiple of the maps'), so
a generation that expired cannot bring an old map back.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from edge.metrics import Metrics
from edge.preferences_instruments import preferences_instruments
from edge.redis_tier import Client, RedisTier
from schemas.preferences import MirroredPreferences, RenderedShortcuts

log = logging.getLogger("bff.preferences.cache")
GENERATION_TTL_FACTOR = 4

_encoder = msgspec.json.Encoder()
_preferences = msgspec.json.Decoder(MirroredPreferences)
_rendered = msgspec.json.Decoder(RenderedShortcuts)


class CachedShortcuts(msgspec.Struct, frozen=True):
    """One round trip's view: the tenant's help generation, the operator's rendered map (if
    still valid) and cached preferences (if any)."""

    generation: int
    rendered: RenderedShortcuts | None
    preferences: MirroredPreferences | None


class PreferencesCache:
    def __init__(
        self, tier: RedisTier, metrics: Metrics, *, ttl_s: float, shortcuts_ttl_s: float
    ) -> None:
        self._tier = tier
        self._meters = preferences_instruments(metrics)
        self._ttl_ms = max(1, int(ttl_s * 1000))
        self._map_ttl_ms = max(1, int(shortcuts_ttl_s * 1000))

    def preferences_key(self, tenant: str, operator_id: str) -> str:
        return self._tier.key(tenant, "operator", operator_id, "preferences")

    def shortcuts_key(self, tenant: str, operator_id: str) -> str:
        return self._tier.key(tenant, "operator", operator_id, "shortcuts")

    def generation_key(self, tenant: str) -> str:
        return self._tier.key(tenant, "shortcuts", "generation")

    async def get(self, tenant: str, operator_id: str) -> MirroredPreferences | None:
        """The cached preferences, ``None`` when absent or unreadable; raises
        ``TierUnavailable``."""
        raw = await self._tier.run(lambda r: r.get(self.preferences_key(tenant, operator_id)))
        found: MirroredPreferences | None = _decode(_preferences, raw, tenant, operator_id)
        return found

    async def put(self, prefs: MirroredPreferences) -> None:
        """Cache ``prefs`` (what tenant-service or the mirror holds, never a request's wish);
        raises ``TierUnavailable``."""
        key = self.preferences_key(prefs.tenant, prefs.operator_id)
        body = _encoder.encode(prefs)
        await self._tier.run(lambda r: r.set(key, body, px=self._ttl_ms))

    async def drop(self, tenant: str, operator_id: str) -> None:
        """Forget the operator's cached preferences and rendered map; raises
        ``TierUnavailable``."""
        keys = (self.preferences_key(tenant, operator_id), self.shortcuts_key(tenant, operator_id))
        await self._tier.run(lambda r: r.delete(*keys))

    async def shortcuts(self, tenant: str, operator_id: str) -> CachedShortcuts:
        """The generation, the rendered map and the preferences in one round trip; the map is
        returned only while valid (see the module docstring). Raises ``TierUnavailable``."""
        keys = (
            self.generation_key(tenant),
            self.shortcuts_key(tenant, operator_id),
            self.preferences_key(tenant, operator_id),
        )

        async def op(r: Client) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                result: list[Any] = await pipe.execute()
                return result

        raw_generation, raw_map, raw_prefs = await self._tier.run(op)
        generation = _generation(raw_generation)
        prefs = _decode(_preferences, raw_prefs, tenant, operator_id)
        rendered = _decode(_rendered, raw_map, tenant, operator_id)
        valid = (
            rendered is not None
            and prefs is not None
            and rendered.generation == generation
            and rendered.map.preferences_version == prefs.version
        )
        return CachedShortcuts(generation, rendered if valid else None, prefs)

    async def put_shortcuts(
        self, tenant: str, operator_id: str, rendered: RenderedShortcuts
    ) -> None:
        key = self.shortcuts_key(tenant, operator_id)
        body = _encoder.encode(rendered)
        await self._tier.run(lambda r: r.set(key, body, px=self._map_ttl_ms))

    async def invalidate_tenant(self, tenant: str) -> None:
        """Make every shortcut map rendered for the tenant's operators stale (a new theme);
        raises ``TierUnavailable`` (then the event is redelivered)."""
        key = self.generation_key(tenant)
        ttl_ms = self._map_ttl_ms * GENERATION_TTL_FACTOR

        async def op(r: Client) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

        await self._tier.run(op)
        self._meters.help_invalidations.inc()


def _generation(raw: object) -> int:
    try:
        return int(raw) if isinstance(raw, (bytes, str)) else 0
    except ValueError:
        return 0


def _decode(decoder: msgspec.json.Decoder[Any], raw: object, tenant: str, operator: str) -> Any:
    """A cached value, or ``None`` when absent or not what this version of the BFF writes (then
    it is read through again and overwritten)."""
    if not isinstance(raw, (bytes, str)):
        return None
    try:
        value = decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("unreadable preferences cache entry", extra={"tenant": tenant})
        return None
    # A key names its tenant and operator; an entry naming others is not theirs to read.
    owner = getattr(value, "tenant", tenant), getattr(value, "operator_id", operator)
    if isinstance(value, RenderedShortcuts):
        owner = tenant, value.map.operator_id
    return value if owner == (tenant, operator) else None
