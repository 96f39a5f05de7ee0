"""One circuit breaker per upstream: closed → open → half-open → closed.

- closed: calls flow; ``failure_threshold`` failures in a row open the circuit.
- open: calls fail fast (UPSTREAM_UNAVAILABLE) without touching the upstream, for ``open_s``.
- half-open: one probe call at a time goes through; success closes, failure re-opens.

A failure is what says the upstream is unwell: a 5xx, a refused/reset connection, or an attempt
that used its full policy timeout. Not failures: 4xx answers, schema drift (the upstream
answered), and attempts cut short by the caller's own deadline (not the upstream's fault).
State changes are exported (``bff_upstream_circuit_state``: 0 closed, 1 half-open, 2 open) and
feed readiness ("upstreamCircuits": ready needs at least 80% of circuits closed).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable

import trio

from edge.metrics import Metrics
from edge.readiness import Probe
from schemas.health import DependencyCheck

log = logging.getLogger("bff.upstream.breaker")
READY_CLOSED_SHARE = 0.8


class State(enum.Enum):
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        open_s: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self._metrics = metrics
        self._clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._export()

    @property
    def state(self) -> State:
        """The current state (an open circuit past its wait reports half-open)."""
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.open_s:
            self._move(State.HALF_OPEN)
        return self._state

    def try_acquire(self) -> bool:
        """May a call go out now? In half-open only one probe at a time; the caller must then
        report :meth:`success`, :meth:`failure` or :meth:`release`."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def success(self) -> None:
        self._probe_in_flight = False
        self._failures = 0
        if self._state is not State.CLOSED:
            self._move(State.CLOSED)

    def failure(self) -> None:
        self._probe_in_flight = False
        self._failures += 1
        if self._state is State.HALF_OPEN or (
            self._state is State.CLOSED and self._failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._move(State.OPEN)

    def release(self) -> None:
        """The call ended without a verdict (cancelled, or cut short by the caller's deadline)."""
        self._probe_in_flight = False

    def _move(self, to: State) -> None:
        previous, self._state = self._state, to
        if to is State.CLOSED:
            self._failures = 0
        log.warning(
            "circuit state changed",
            extra={"upstream": self.name, "from": previous.name.lower(), "to": to.name.lower()},
        )
        if self._metrics is not None:
            self._metrics.upstream_circuit_transitions.labels(self.name, to.name.lower()).inc()
        self._export()

    def _export(self) -> None:
        if self._metrics is not None:
            self._metrics.upstream_circuit_state.labels(self.name).set(self._state.value)


def circuits_probe(breakers: Iterable[CircuitBreaker]) -> Probe:
    """Readiness: ok while at least 80% of the circuits are closed; names the others."""
    group = list(breakers)

    async def probe() -> DependencyCheck:
        not_closed = [
            f"{b.name}={b.state.name.lower()}" for b in group if b.state is not State.CLOSED
        ]
        closed_share = 1 - len(not_closed) / max(1, len(group))
        ok = closed_share >= READY_CLOSED_SHARE
        detail = (
            ""
            if not not_closed
            else (f"{len(group) - len(not_closed)}/{len(group)} closed; " + ", ".join(not_closed))
        )
        return DependencyCheck(ok=ok, detail=detail)

    return probe
