"""OperatorPreferences, write-through to tenant-service, and the operator's rendered
``KeyboardShortcutMap`` (SERVICE_OVERVIEW §3, FAILURE_MODES F-3, F-36).

tenant-service is the authority. The BFF keeps two copies of what it said: the Postgres mirror
(``ledger.preferences``) and the Redis cache (``edge.preferences_cache``).

**Write** (``PUT /preferences``), in this order, each step only after the one before succeeded:

1. read the operator's preferences from tenant-service and merge the change into them (the
   route's fields are optional, tenant-service's ``PUT`` replaces the whole set);
2. if that changes anything, ``PUT`` it to tenant-service as a compare-and-set on the version
   read (``expectedVersion``) with the request's ``Idempotency-Key``; a concurrent change from
   another device (409) starts again from 1, at most ``MAX_ROUNDS`` times;
3. the mirror, then the operator-activity row, then the cache — each with what tenant-service
   answered, never with what the desktop asked for.

tenant-service failing in 1 or 2 is 503 ``SERVICE_UNAVAILABLE`` (retryable) and nothing is
written anywhere: mirror and cache keep agreeing with tenant-service (F-36). A failure in 3
leaves tenant-service ahead of the BFF's copies (stale, never contradicting it): the cached copy
is dropped if the cache answers, and the request is 503 so the desktop retries; the retry finds
tenant-service already holding the change (step 1 sees nothing to write), so the upstream is not
written twice even after the idempotency layer released the key, and 3 runs again.

**Read** (``GET /preferences`` and the shortcut map): the cache; else the mirror when
tenant-service confirmed it within the cache's TTL (the cache tier may be down or evicted it);
else tenant-service (refilling mirror and cache); tenant-service down → the mirror's copy,
``stale: true`` (F-3); nothing at all → the upstream's error (502).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from actors.activity import activity_event
from actors.ports import EventLog
from edge.auth.principal import Principal
from edge.errors import ApiError, Code
from edge.metrics import Metrics
from edge.preferences_cache import PreferencesCache
from edge.preferences_instruments import preferences_instruments
from edge.redis_tier import TierUnavailable
from edge.shortcuts import render
from edge.upstream.apis import TenantApi
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from ledger.database import DatabaseUnavailable
from ledger.model import NewEvent
from ledger.preferences import PreferencesMirror
from schemas.preferences import (
    KeyboardShortcutMap,
    MirroredPreferences,
    Preferences,
    PreferencesUpdate,
    RenderedShortcuts,
)
from schemas.upstream import tenant as tnt

log = logging.getLogger("bff.preferences")
MAX_ROUNDS = 3  # read-merge-write rounds lost to concurrent changes before answering CONFLICT
ACTIVITY = "preferences.update"


@dataclass(frozen=True)
class Current:
    prefs: MirroredPreferences
    stale: bool


class OperatorPreferencesService:
    def __init__(
        self,
        api: TenantApi,
        mirror: PreferencesMirror,
        cache: PreferencesCache,
        log_: EventLog,
        metrics: Metrics,
        *,
        fresh_s: float,
    ) -> None:
        self._api = api
        self._mirror = mirror
        self._cache = cache
        self._log = log_
        self._meters = preferences_instruments(metrics)
        self._fresh_s = fresh_s

    # --- reads ---------------------------------------------------------------------------------

    async def read(self, tenant: str, operator_id: str) -> Preferences:
        """The operator's preferences (see the module docstring for where from)."""
        current = await self.current(tenant, operator_id)
        return wire(current.prefs, stale=current.stale)

    async def current(self, tenant: str, operator_id: str, *, cache: bool = True) -> Current:
        """The freshest copy the BFF can get; ``cache=False`` when the caller read the cache
        already. Raises the upstream's ``ApiError`` only when no copy exists at all."""
        if cache:
            cached = await self._cached(tenant, operator_id)
            if cached is not None:
                self._meters.reads.labels("cache").inc()
                return Current(cached, stale=False)
        mirrored = await self._mirrored(tenant, operator_id)
        if mirrored is not None and self._fresh(mirrored):
            self._meters.reads.labels("mirror").inc()
            await self._fill(mirrored)
            return Current(mirrored, stale=False)
        try:
            answer = await self._api.preferences(tenant, operator_id)
        except UpstreamFailure as exc:
            if mirrored is None:
                self._meters.reads.labels("failed").inc()
                raise
            self._meters.reads.labels("stale").inc()
            log.warning(
                "tenant-service unavailable; serving mirrored preferences",
                extra={"tenant": tenant, "error": str(exc)[:300]},
            )
            return Current(mirrored, stale=True)
        confirmed = await self._keep(mirrored_copy(tenant, operator_id, answer))
        await self._fill(confirmed)
        self._meters.reads.labels("upstream").inc()
        return Current(confirmed, stale=False)

    async def shortcut_map(self, tenant: str, operator_id: str) -> KeyboardShortcutMap:
        """The operator's rendered map: the cached one while valid, else rendered from the
        current preferences (and cached unless stale); defaults only (``degraded``) when the
        preferences cannot be read at all — a desk always gets a keyboard map."""
        generation: int | None = None
        cached: MirroredPreferences | None = None
        try:
            seen = await self._cache.shortcuts(tenant, operator_id)
        except TierUnavailable as exc:
            self._cache_failed("read", exc)
        else:
            if seen.rendered is not None:
                self._meters.shortcut_maps.labels("cached").inc()
                return seen.rendered.map
            generation, cached = seen.generation, seen.preferences
        try:
            current = (
                Current(cached, stale=False)
                if cached is not None
                else await self.current(tenant, operator_id, cache=False)
            )
        except (UpstreamFailure, UpstreamRejected) as exc:
            self._meters.shortcut_maps.labels("degraded").inc()
            log.warning(
                "preferences unreadable; default shortcuts served",
                extra={"tenant": tenant, "error": str(exc)[:300]},
            )
            return render(operator_id, None, rendered_at=_now(), version=None)
        rendered = render(
            operator_id,
            current.prefs.shortcuts,
            rendered_at=_now(),
            version=current.prefs.version,
            stale=current.stale,
        )
        if rendered.ignored:
            self._meters.overrides_ignored.inc(len(rendered.ignored))
        if generation is not None and not current.stale:
            stamped = RenderedShortcuts(generation=generation, map=rendered)
            try:
                await self._cache.put_shortcuts(tenant, operator_id, stamped)
            except TierUnavailable as exc:
                self._cache_failed("write", exc)
        self._meters.shortcut_maps.labels("rendered").inc()
        return rendered

    # --- the write-through ---------------------------------------------------------------------

    async def update(
        self,
        principal: Principal,
        change: PreferencesUpdate,
        key: str | None,
        *,
        request_id: str | None = None,
    ) -> Preferences:
        """Apply ``change`` (already validated) at tenant-service, then to the mirror, the
        operator's activity and the cache (see the module docstring)."""
        tenant, operator_id = principal.tenant, principal.operator_id
        for _ in range(MAX_ROUNDS):
            current = await self._authority(tenant, operator_id)
            target = merged(current, change)
            if same(current, target):
                written, changed = current, False
                break
            try:
                written = await self._api.put_preferences(tenant, operator_id, target, key)
            except UpstreamRejected as exc:
                if exc.status != 409:
                    raise
                log.info("preferences changed meanwhile; merging again", extra={"tenant": tenant})
                continue
            except UpstreamFailure as exc:
                raise self._upstream_failed(exc) from None
            changed = True
            break
        else:
            self._meters.writes.labels("conflict").inc()
            raise ApiError(
                Code.CONFLICT, "preferences kept changing on another device; read them and retry"
            )
        stored = await self._record(principal, written, changed=changed, key=key, rid=request_id)
        self._meters.writes.labels("written" if changed else "unchanged").inc()
        return wire(stored, stale=False)

    async def _authority(self, tenant: str, operator_id: str) -> tnt.OperatorPreferences:
        try:
            return await self._api.preferences(tenant, operator_id)
        except UpstreamFailure as exc:
            raise self._upstream_failed(exc) from None

    def _upstream_failed(self, exc: UpstreamFailure) -> ApiError:
        """tenant-service could not be read or written: nothing of the BFF's was touched."""
        self._meters.writes.labels("upstream_failed").inc()
        log.warning("tenant-service unavailable; preferences unchanged", extra={"error": str(exc)})
        if exc.code is Code.SCHEMA_DRIFT:
            return exc
        return ApiError(
            Code.SERVICE_UNAVAILABLE,
            "tenant-service could not confirm the change; nothing was changed here; retry",
        )

    async def _record(
        self,
        principal: Principal,
        answer: tnt.OperatorPreferences,
        *,
        changed: bool,
        key: str | None,
        rid: str | None,
    ) -> MirroredPreferences:
        """Mirror, activity, cache: what tenant-service answered, in that order."""
        tenant, operator_id = principal.tenant, principal.operator_id
        copy = mirrored_copy(tenant, operator_id, answer)
        try:
            stored = await self._mirror.put(copy)
            await self._log.append([_activity(principal, stored, changed, key, rid)])
        except DatabaseUnavailable as exc:
            self._meters.writes.labels("mirror_failed").inc()
            self._meters.store_failures.labels("mirror", "write").inc()
            log.warning("preferences not mirrored", extra={"tenant": tenant, "error": str(exc)})
            await self._forget(tenant, operator_id)
            raise ApiError(
                Code.SERVICE_UNAVAILABLE,
                "tenant-service has the change but the BFF could not record it; retry",
            ) from None
        try:
            await self._cache.put(stored)
        except TierUnavailable as exc:
            self._meters.writes.labels("cache_failed").inc()
            self._cache_failed("write", exc)
            await self._forget(tenant, operator_id)
            raise ApiError(
                Code.CACHE_UNAVAILABLE,
                "tenant-service has the change but the BFF cache could not be updated; retry",
            ) from None
        return stored

    # --- the BFF's copies ----------------------------------------------------------------------

    def _fresh(self, prefs: MirroredPreferences) -> bool:
        return (_now() - prefs.synced_at).total_seconds() <= self._fresh_s

    async def _cached(self, tenant: str, operator_id: str) -> MirroredPreferences | None:
        try:
            return await self._cache.get(tenant, operator_id)
        except TierUnavailable as exc:
            self._cache_failed("read", exc)
            return None

    async def _mirrored(self, tenant: str, operator_id: str) -> MirroredPreferences | None:
        try:
            return await self._mirror.get(tenant, operator_id)
        except DatabaseUnavailable as exc:
            self._meters.store_failures.labels("mirror", "read").inc()
            log.warning("preferences mirror unreadable", extra={"error": str(exc)[:300]})
            return None

    async def _keep(self, copy: MirroredPreferences) -> MirroredPreferences:
        """Mirror what tenant-service answered a read; the newer of it and the mirror's row.
        Postgres down costs only the mirror's freshness."""
        try:
            return await self._mirror.put(copy)
        except DatabaseUnavailable as exc:
            self._meters.store_failures.labels("mirror", "write").inc()
            log.warning("preferences not mirrored", extra={"error": str(exc)[:300]})
            return copy

    async def _fill(self, prefs: MirroredPreferences) -> None:
        try:
            await self._cache.put(prefs)
        except TierUnavailable as exc:
            self._cache_failed("write", exc)

    async def _forget(self, tenant: str, operator_id: str) -> None:
        """Drop the cached copy so no read serves it as current; the TTL bounds it otherwise."""
        try:
            await self._cache.drop(tenant, operator_id)
        except TierUnavailable as exc:
            self._cache_failed("delete", exc)

    def _cache_failed(self, operation: str, exc: TierUnavailable) -> None:
        self._meters.store_failures.labels("cache", operation).inc()
        log.warning("preferences cache unavailable", extra={"error": str(exc)[:300]})


# --- pure helpers ------------------------------------------------------------------------------


def merged(current: tnt.OperatorPreferences, change: PreferencesUpdate) -> tnt.PreferencesUpdate:
    """tenant-service's whole-set ``PUT`` body: ``change``'s fields over ``current``, as a
    compare-and-set on ``current``'s version."""
    return tnt.PreferencesUpdate(
        layout=change.layout if change.layout is not None else current.layout,
        density=change.density if change.density is not None else current.density,
        columns=change.columns if change.columns is not None else current.columns,
        shortcuts=change.shortcuts if change.shortcuts is not None else current.shortcuts,
        expected_version=current.version,
    )


def same(current: tnt.OperatorPreferences, target: tnt.PreferencesUpdate) -> bool:
    return (current.layout, current.density, current.columns, current.shortcuts) == (
        target.layout,
        target.density,
        target.columns,
        target.shortcuts,
    )


def mirrored_copy(
    tenant: str, operator_id: str, answer: tnt.OperatorPreferences
) -> MirroredPreferences:
    """tenant-service's answer as the BFF keeps it, confirmed now."""
    return MirroredPreferences(
        tenant=tenant,
        operator_id=operator_id,
        layout=answer.layout,
        density=answer.density,
        columns=answer.columns,
        shortcuts=answer.shortcuts,
        version=answer.version,
        updated_at=answer.updated_at,
        synced_at=_now(),
    )


def wire(prefs: MirroredPreferences, *, stale: bool) -> Preferences:
    fields = msgspec.structs.asdict(prefs)
    del fields["tenant"]
    return Preferences(**fields, stale=stale)


def _activity(
    principal: Principal,
    prefs: MirroredPreferences,
    changed: bool,
    key: str | None,
    rid: str | None,
) -> NewEvent:
    """The ``operator.activity.v1`` row of this update (idempotent per device and key)."""
    return activity_event(
        tenant=principal.tenant,
        operator_id=principal.operator_id,
        device_id=principal.device_id,
        action=ACTIVITY,
        target="preferences",
        outcome="success" if changed else "unchanged",
        ref=f"preferences@{prefs.version}",
        session_id=principal.session_id,
        request_id=rid,
        key=f"preferences:{principal.device_id}:{key}" if key else None,
    )


def _now() -> datetime:
    return datetime.now(UTC)
