"""One composition: every upstream call of a role's plan once, in one nursery, under a hard
overall deadline (F-33), each widget emitted the moment its own call(s) are in.

Three deadlines nest: the overall one (a cancel scope around the whole nursery: nothing — not
even an upstream that ignores its own timeout — outlives it), each widget's own (it turns
``unavailable`` when its calls are not in by then), and each call's, which is the longest
deadline among the widgets that share it (so one slow reader never cuts a faster one short).
The upstream client caps every attempt at Trio's effective deadline, so a call that runs out of
time ends with a typed ``timeout`` failure rather than a bare cancellation.

Calls start slowest-first (by their recent latency, :class:`LatencyBook`), one scheduling step
apart: issuing a request costs the event loop a fraction of a millisecond, so the last of ~14
calls leaves several ms after the first; that delay should fall on calls that have slack, not
on the one that decides when the dashboard is complete.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import trio
import trio.lowlevel

from edge import tracing
from edge.dashboard.catalogue import Plan, Source, Widget
from edge.metrics import Metrics
from edge.upstream.apis import Upstreams
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from schemas.dashboard import WidgetLine

log = logging.getLogger("bff.dashboard")
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class WidgetResult:
    """One emitted widget: its encoded stream line (no newline) and whether it is ``ok``."""

    id: str
    ok: bool
    line: bytes


@dataclass
class _Call:
    """The outcome of one upstream call, shared by the widgets drawn from it."""

    done: trio.Event = field(default_factory=trio.Event)
    value: Any = None
    failure: str | None = None  # "timeout", "unavailable", "drift", …; None when it answered
    seconds: float = 0.0


Emit = Callable[[WidgetResult], None]


@dataclass(frozen=True)
class Composed:
    partial: bool  # some widget is unavailable
    slowest_call_s: float  # the longest upstream call (what the composition cannot beat)


class LatencyBook:
    """Recent latency of each upstream call (exponentially weighted), per process."""

    def __init__(self, alpha: float = 0.2) -> None:
        self._alpha = alpha
        self._ewma: dict[str, float] = {}

    def slowest_first(self, sources: tuple[Source, ...]) -> list[Source]:
        """Unknown calls first (they may be slow), then by recent latency, longest first."""
        return sorted(sources, key=lambda s: -self._ewma.get(s.id, math.inf))

    def record(self, source_id: str, seconds: float) -> None:
        previous = self._ewma.get(source_id)
        self._ewma[source_id] = (
            seconds if previous is None else previous + self._alpha * (seconds - previous)
        )


def unavailable(widget: Widget) -> WidgetResult:
    line = WidgetLine(id=widget.id, status="unavailable", source=widget.upstream, data=None)
    return WidgetResult(widget.id, False, _encoder.encode(line))


async def compose(
    plan: Plan,
    upstreams: Upstreams,
    tenant: str,
    property_id: str,
    emit: Emit,
    *,
    deadline_s: float,
    metrics: Metrics | None = None,
    book: LatencyBook | None = None,
) -> Composed:
    """Emit one result per widget of ``plan`` (completion order). Returns within
    ``deadline_s`` whatever the upstreams do."""
    started = trio.current_time()
    hard = started + deadline_s
    calls = {id(source): _Call() for source in plan.sources}
    emitted: set[str] = set()
    partial = False

    def record(widget: Widget, result: WidgetResult) -> None:
        nonlocal partial
        emitted.add(widget.id)
        partial = partial or not result.ok
        if metrics is not None:
            metrics.dashboard_widgets.labels(
                widget.upstream, "ok" if result.ok else "unavailable"
            ).inc()
        emit(result)

    book = book or LatencyBook()
    # the calls' spans (edge/upstream/client.py) are children of this one: tasks inherit it
    with tracing.span("dashboard.compose") as span:
        with trio.move_on_at(hard):
            async with trio.open_nursery() as nursery:
                for widget in plan.widgets:  # these only park on their calls' events
                    limit = min(hard, started + widget.deadline_s)
                    nursery.start_soon(_run_widget, widget, plan, calls, limit, record)
                for source in book.slowest_first(plan.sources):
                    limit = min(hard, started + _call_deadline(plan, source))
                    call = calls[id(source)]
                    nursery.start_soon(
                        _run_call, source, call, upstreams, tenant, property_id, limit, book
                    )
                    # one scheduling step: it gets its request out before the next one starts
                    await trio.lowlevel.checkpoint()
        for widget in plan.widgets:  # the overall deadline cut these off
            if widget.id not in emitted:
                record(widget, unavailable(widget))
        if span is not None:
            span.set_attributes(
                {
                    "bff.role": plan.role,
                    "bff.tenant": tenant,
                    "bff.property": property_id,
                    "bff.widgets": len(plan.widgets),
                    "bff.partial": partial,
                }
            )
    slowest = max((c.seconds for c in calls.values()), default=0.0)
    return Composed(partial, slowest)


def _call_deadline(plan: Plan, source: Source) -> float:
    return max(w.deadline_s for w in plan.widgets if source in w.sources)


async def _run_call(
    source: Source,
    call: _Call,
    upstreams: Upstreams,
    tenant: str,
    property_id: str,
    deadline: float,
    book: LatencyBook,
) -> None:
    started = trio.current_time()
    try:
        with trio.move_on_at(deadline):
            call.value = await source.fetch(upstreams, tenant, property_id)
            return
        call.failure = "timeout"
    except UpstreamFailure as exc:
        call.failure = exc.kind
    except UpstreamRejected as exc:
        call.failure = f"rejected {exc.status}"
    except Exception as exc:  # a bug in one fetch greys out its widgets, never the dashboard
        log.exception("dashboard call failed", extra={"source": source.id})
        call.failure = type(exc).__name__
    finally:
        call.seconds = trio.current_time() - started
        book.record(source.id, call.seconds)
        if call.failure is not None:
            log.info(
                "dashboard source unavailable",
                extra={"source": source.id, "tenant": tenant, "reason": call.failure},
            )
        call.done.set()


async def _run_widget(
    widget: Widget,
    plan: Plan,
    calls: dict[int, _Call],
    deadline: float,
    record: Callable[[Widget, WidgetResult], None],
) -> None:
    mine = [calls[id(source)] for source in widget.sources]
    with trio.move_on_at(deadline):
        for call in mine:
            await call.done.wait()
    if not all(call.done.is_set() and call.failure is None for call in mine):
        record(widget, unavailable(widget))
        return
    try:
        data = widget.render([call.value for call in mine], plan.role)
    except Exception:
        log.exception("dashboard widget failed to render", extra={"widget": widget.id})
        record(widget, unavailable(widget))
        return
    line = WidgetLine(id=widget.id, status="ok", source=widget.upstream, data=data)
    record(widget, WidgetResult(widget.id, True, _encoder.encode(line)))
