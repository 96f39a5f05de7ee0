"""The dashboard engine: cache look-ups, single-flight in the process, and the composition
tasks themselves, which run in the engine's own nursery.

A request never composes in its own task. It reads the cache; on a miss it follows the flight
already running for that cache name in this process, or starts one here. So a client that
disconnects cancels only its own following, never the composition others wait on. The engine
owns the per-process map of running flights; the PropertyActor owns *when* views go stale and
reaches them through the :class:`~actors.ports.PropertyViews` port this engine implements
(``invalidate`` supersedes the running flights an event makes stale).

Across instances, a flight first claims a short Redis lock for its cache name (one round trip
that also returns any entry already there and the family's generation). Whoever gets the lock
composes; the others poll for the entry it stores, and compose themselves only if the lock
disappears without an entry. With the cache tier down every flight just composes (F-17).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import trio

from actors.ports import Invalidation
from edge.dashboard.cache import CacheRef, Claim, Snapshot, SnapshotCache, make_snapshot
from edge.dashboard.catalogue import Plan, plan_for
from edge.dashboard.composer import LatencyBook, WidgetResult, compose
from edge.dashboard.flight import Flight
from edge.dashboard.invalidation import affected_by, dashboard_name, is_affected
from edge.dashboard.telemetry import Appender, TelemetryWriter
from edge.dashboard.views import BOARDS, ViewSpec, build_view
from edge.errors import ApiError
from edge.metrics import Metrics
from edge.redis_tier import RedisTier, TierUnavailable
from edge.settings import Settings
from edge.upstream.apis import Upstreams
from edge.upstream.errors import UpstreamFailure
from schemas.dashboard import DashboardHint
from schemas.identifiers import Role

T = TypeVar("T")

log = logging.getLogger("bff.dashboard")
_encoder = msgspec.json.Encoder()
PEER_POLL_S = 0.02
FlightKey = tuple[str, str, str]  # (tenant, property id, cache name)


class _Head(msgspec.Struct):
    id: str
    status: str


_head = msgspec.json.Decoder(_Head)


@dataclass(frozen=True)
class Timing:
    """Deadlines and lifetimes (``edge/settings.py``: ``BFF_DASHBOARD_*``, ``BFF_WORKBENCH_*``)."""

    dashboard_deadline_s: float = 0.55
    dashboard_ttl_s: float = 30.0
    partial_ttl_s: float = 5.0
    workbench_deadline_s: float = 0.9
    workbench_ttl_s: float = 15.0
    stale_max_s: float = 600.0
    cache_timeout_s: float = 0.25

    @classmethod
    def from_settings(cls, s: Settings) -> Timing:
        return cls(
            dashboard_deadline_s=s.dashboard_deadline_s,
            dashboard_ttl_s=s.dashboard_ttl_s,
            partial_ttl_s=s.dashboard_partial_ttl_s,
            workbench_deadline_s=s.workbench_deadline_s,
            workbench_ttl_s=s.workbench_ttl_s,
            stale_max_s=s.workbench_stale_max_s,
            cache_timeout_s=s.dashboard_cache_timeout_s,
        )


class DashboardEngine:
    def __init__(
        self, upstreams: Upstreams, tier: RedisTier, metrics: Metrics, timing: Timing
    ) -> None:
        self.upstreams = upstreams
        self.timing = timing
        self.cache = SnapshotCache(tier, metrics, timeout=timing.cache_timeout_s)
        self.telemetry = TelemetryWriter(metrics)
        self._metrics = metrics
        self._nursery: trio.Nursery | None = None
        self._latencies = LatencyBook()
        self._flights: dict[FlightKey, Flight[Any]] = {}  # running compositions (single-flight)

    @property
    def lock_s(self) -> float:
        """How long a composer holds the lock at most: its deadline plus slack."""
        return max(self.timing.dashboard_deadline_s, self.timing.workbench_deadline_s) + 0.5

    async def run(
        self,
        ledger: Appender | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Host flights and the telemetry writer until cancelled (start with ``nursery.start``)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.telemetry.run, ledger)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # --- what routes call --------------------------------------------------------------------

    def dashboard_ref(self, tenant: str, property_id: str, role: Role) -> CacheRef:
        name = dashboard_name(role)
        return CacheRef(tenant, property_id, name, name, plan_for(role).fingerprint)

    def view_ref(self, tenant: str, property_id: str, spec: ViewSpec) -> CacheRef:
        return CacheRef(tenant, property_id, spec.name, spec.family)

    async def dashboard(self, tenant: str, property_id: str, role: Role) -> Flight[WidgetResult]:
        """The cached dashboard as a finished flight, or the (shared) composition of it."""
        ref = self.dashboard_ref(tenant, property_id, role)
        snap = await self.cache.get(ref)
        if snap is not None:
            return Flight.done(
                ref.name,
                _widgets(snap),
                partial=snap.partial,
                origin="cache",
                generated_at=snap.generated_at,
            )
        return await self._follow(ref, lambda: self.start_dashboard(tenant, property_id, role))

    async def view(self, tenant: str, property_id: str, spec: ViewSpec) -> Flight[bytes]:
        ref = self.view_ref(tenant, property_id, spec)
        snap = await self.cache.get(ref)
        if snap is not None:
            return Flight.done(
                ref.name,
                [bytes(snap.items[0])],
                partial=snap.partial,
                origin="cache",
                generated_at=snap.generated_at,
            )
        return await self._follow(ref, lambda: self.start_view(tenant, property_id, spec))

    async def _follow(self, ref: CacheRef, start: Callable[[], Flight[T]]) -> Flight[T]:
        """Single-flight: the running flight of ``ref`` in this process, else a new one (whose
        name then goes into the property's index, so invalidation finds its entry)."""
        key = (ref.tenant, ref.property_id, ref.name)
        running = self._flights.get(key)
        if running is not None and not running.finished and not running.superseded:
            self._metrics.dashboard_flights.labels(_kind(ref.name), "joined").inc()
            return running
        flight = start()
        self._flights[key] = flight
        with contextlib.suppress(TierUnavailable):  # then the entry is not stored either
            await self.cache.track(ref.tenant, ref.property_id, ref.name)
        return flight

    def _forget(self, ref: CacheRef, flight: Flight[Any]) -> None:
        """A finished flight leaves the map (followers keep their reference to it)."""
        key = (ref.tenant, ref.property_id, ref.name)
        if self._flights.get(key) is flight:
            del self._flights[key]

    # --- what the PropertyActor calls --------------------------------------------------------

    def start_dashboard(self, tenant: str, property_id: str, role: Role) -> Flight[WidgetResult]:
        ref = self.dashboard_ref(tenant, property_id, role)
        flight: Flight[WidgetResult] = Flight(ref.name)
        self._spawn(self._run_dashboard, flight, ref, plan_for(role))
        return flight

    def start_view(self, tenant: str, property_id: str, spec: ViewSpec) -> Flight[bytes]:
        ref = self.view_ref(tenant, property_id, spec)
        flight: Flight[bytes] = Flight(ref.name)
        self._spawn(self._run_view, flight, ref, spec)
        return flight

    # --- the PropertyViews port (what the PropertyActor calls) --------------------------------

    async def names(self, tenant: str, property_id: str) -> list[str]:
        return await self.cache.names(tenant, property_id)

    async def track(self, tenant: str, property_id: str, name: str) -> None:
        await self.cache.track(tenant, property_id, name)

    async def delete(self, tenant: str, property_id: str, names: Sequence[str]) -> int:
        return await self.cache.delete(tenant, property_id, names)

    async def invalidate(
        self, tenant: str, property_id: str, subject: str, event_id: str
    ) -> Invalidation:
        """Supersede this process's running flights that ``subject`` makes stale (still served
        to their followers, never cached), bump their families' generations, then delete the
        stale entries; the returned hint goes to the desktops (useful even with the cache tier
        down). With the generations bumped a failed delete is harmless, so only a failed delete
        without that raises (and the event is redelivered)."""
        affected = affected_by(subject)
        if not affected:
            return Invalidation(voided=False, deleted=[])
        for (t, pid, name), flight in list(self._flights.items()):
            if (t, pid) == (tenant, property_id) and is_affected(name, affected):
                flight.superseded = True
                del self._flights[(t, pid, name)]
        voided = await self.cache.bump(tenant, property_id, affected.families)
        hint = DashboardHint(
            property_id=property_id,
            widgets=affected.widgets,
            views=affected.views,
            subject=subject,
            event_id=event_id,
            at=_utc_now(),
        )
        try:
            names = await self.cache.names(tenant, property_id)
        except TierUnavailable as exc:  # unreachable index: nothing it names can be read now
            log.warning("cache index not read; nothing deleted", extra={"error": str(exc)})
            names = []
        stale = [n for n in names if is_affected(n, affected)]
        try:
            await self.cache.delete(tenant, property_id, stale)
        except TierUnavailable as exc:
            if not voided:
                raise
            log.warning("stale cache entries not deleted (voided)", extra={"error": str(exc)})
            stale = []
        return Invalidation(voided=voided, deleted=stale, hint=msgspec.to_builtins(hint))

    def _spawn(self, run: Any, flight: Flight[Any], *args: Any) -> None:
        if self._nursery is None:
            raise RuntimeError("the dashboard engine is not running")
        self._metrics.dashboard_flights.labels(_kind(flight.name), "started").inc()
        self._nursery.start_soon(run, flight, *args, name=f"flight {flight.name}")

    # --- flights -----------------------------------------------------------------------------

    async def _run_dashboard(self, flight: Flight[WidgetResult], ref: CacheRef, plan: Plan) -> None:
        token = uuid.uuid4().hex
        claim = Claim(None, None, None)
        try:
            claim, snap = await self._claim_or_wait(ref, token)
            if snap is not None:
                for item in _widgets(snap):
                    flight.add(item)
                flight.origin = "cache" if claim.snapshot is not None else "peer"
                flight.finish(partial=snap.partial, generated_at=snap.generated_at)
                return
            started = trio.current_time()
            composed = await compose(
                plan,
                self.upstreams,
                ref.tenant,
                ref.property_id,
                flight.add,
                deadline_s=self.timing.dashboard_deadline_s,
                metrics=self._metrics,
                book=self._latencies,
            )
            partial = composed.partial
            flight.finish(partial=partial)
            self._observe("dashboard", partial, trio.current_time() - started)
            self._metrics.dashboard_slowest_call_seconds.observe(composed.slowest_call_s)
            if claim.gen is not None and not flight.superseded:
                ttl = self.timing.partial_ttl_s if partial else self.timing.dashboard_ttl_s
                items = [result.line for result in flight.items]
                snap = make_snapshot(ref, claim.gen, partial, items, flight.generated_at)
                await self.cache.store(ref, snap, ttl)
        except Exception as exc:
            log.exception("dashboard flight failed", extra={"cacheName": ref.name})
            flight.finish(partial=True, error=exc)
        finally:
            flight.finish(partial=True)
            self._forget(ref, flight)  # no-op unless cancelled before finishing
            if claim.locked:
                with trio.move_on_after(self.timing.cache_timeout_s) as scope:
                    scope.shield = True
                    await self.cache.release(ref, token)

    async def _run_view(self, flight: Flight[bytes], ref: CacheRef, spec: ViewSpec) -> None:
        token = uuid.uuid4().hex
        claim = Claim(None, None, None)
        try:
            claim, snap = await self._claim_or_wait(ref, token)
            if snap is not None:
                flight.add(bytes(snap.items[0]))
                flight.origin = "cache" if claim.snapshot is not None else "peer"
                flight.finish(partial=snap.partial, generated_at=snap.generated_at)
                return
            started = trio.current_time()
            try:
                body = await self._build(ref, spec)
            except UpstreamFailure as exc:
                await self._serve_stale(flight, ref, spec, claim, exc)
                return
            flight.add(body)
            flight.finish(partial=False)
            self._observe("view", False, trio.current_time() - started)
            if claim.gen is not None and not flight.superseded:
                last = self.timing.stale_max_s if spec.view in BOARDS else None
                snap = make_snapshot(ref, claim.gen, False, [body], flight.generated_at)
                await self.cache.store(ref, snap, self.timing.workbench_ttl_s, last_s=last)
        except ApiError as exc:  # the upstream refused (4xx): the view fails as a whole
            flight.finish(partial=True, error=exc)
        except Exception as exc:
            log.exception("workbench flight failed", extra={"cacheName": ref.name})
            flight.finish(partial=True, error=exc)
        finally:
            flight.finish(partial=True)
            self._forget(ref, flight)
            if claim.locked:
                with trio.move_on_after(self.timing.cache_timeout_s) as scope:
                    scope.shield = True
                    await self.cache.release(ref, token)

    async def _build(self, ref: CacheRef, spec: ViewSpec) -> bytes:
        with trio.move_on_after(self.timing.workbench_deadline_s):
            view = await build_view(spec, self.upstreams, ref.tenant, ref.property_id)
            return _encoder.encode(view)
        raise UpstreamFailure(
            spec.upstream,
            spec.view,
            "timeout",
            "no answer within the view's deadline",
            mutation=False,
        )

    async def _serve_stale(
        self,
        flight: Flight[bytes],
        ref: CacheRef,
        spec: ViewSpec,
        claim: Claim,
        exc: UpstreamFailure,
    ) -> None:
        """F-7/F-8: a board whose upstream is down is served from its last good copy, marked
        ``stale``, when that copy is recent enough; anything else fails with the upstream error."""
        last = await self.cache.last_good(ref) if spec.view in BOARDS else None
        if last is None or time.time() - last.generated_at > self.timing.stale_max_s:
            self._metrics.dashboard_compositions.labels("view", "failed").inc()
            flight.finish(partial=True, error=exc)
            return
        old = msgspec.json.decode(bytes(last.items[0]), type=spec.model)
        body = _encoder.encode(msgspec.structs.replace(old, stale=True, generated_at=_utc_now()))
        flight.add(body)
        flight.finish(partial=True)
        self._metrics.dashboard_compositions.labels("view", "stale").inc()
        if claim.gen is not None and not flight.superseded:
            snap = make_snapshot(ref, claim.gen, True, [body], generated_at=last.generated_at)
            await self.cache.store(ref, snap, self.timing.partial_ttl_s)

    async def _claim_or_wait(self, ref: CacheRef, token: str) -> tuple[Claim, Snapshot | None]:
        """Take the composer lock, or find the entry already there, or wait for the peer that
        holds the lock to store it (``None``: compose ourselves)."""
        claim = await self.cache.claim(ref, token, self.lock_s)
        if claim.snapshot is not None or claim.locked is not False:
            return claim, claim.snapshot
        self._metrics.dashboard_flights.labels(_kind(ref.name), "peer").inc()
        with trio.move_on_after(self.lock_s):
            while True:
                await trio.sleep(PEER_POLL_S)  # polling a peer's progress, not synchronising tests
                snap, held = await self.cache.peer_state(ref)
                if snap is not None or not held:
                    return claim, snap
        return claim, None

    def _observe(self, kind: str, partial: bool, seconds: float) -> None:
        outcome = "partial" if partial else "complete"
        self._metrics.dashboard_compositions.labels(kind, outcome).inc()
        self._metrics.dashboard_composition_seconds.labels(kind).observe(seconds)


def _widgets(snap: Snapshot) -> list[WidgetResult]:
    results = []
    for item in snap.items:
        line = bytes(item)
        head = _head.decode(line)
        results.append(WidgetResult(head.id, head.status == "ok", line))
    return results


def _kind(name: str) -> str:
    return "dashboard" if name.startswith("dashboard:") else "view"


def _utc_now() -> datetime:
    return datetime.now(UTC)
