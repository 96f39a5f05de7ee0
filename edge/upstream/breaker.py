"""One circuit breaker per upstream: closed → open → half-open → closed.

- closed: calls flow; ``failure_threshold`` failures in a row open the circuit.
- open: calls fail fast (UPSTREAM_UNAVAILABLE) without touching the upstream, for ``open_s``.
- half-open: one trial call at a time goes through; its success closes, its failure re-opens.

A call holds its admission for exactly as long as it runs: :meth:`CircuitBreaker.attempt` is a
context manager, so however the call ends (verdict, error, cancellation) the slot is given back
on the way out, and only the trial's own verdict moves a half-open circuit. A trial is shielded
from its caller's cancellation: a view that fails fast on its other calls (``/today``'s three
reservation reads, where two find the circuit half-open and cancel the third) must not abandon
the one call that would tell whether the upstream is back, or no such view could ever close the
circuit (issue #10). The body of a trial must therefore bound itself (the client's attempt
budget does).

A failure is what says the upstream is unwell: a 5xx, a refused/reset connection, or an attempt
that used its full policy timeout — and, for a trial, any timeout (a trial that cannot answer
within its deadline has not shown the upstream is back). Not failures: 4xx answers, schema drift
(the upstream answered), and attempts cut short by the caller's own deadline (not the
upstream's fault). A verdict reported for a call admitted before the circuit last changed state
is ignored: only calls of the current state count (a slow call from the closed period cannot
close or re-open a circuit whose trial is in flight).

State changes are exported (``bff_upstream_circuit_state``: 0 closed, 1 half-open, 2 open) and
feed readiness ("upstreamCircuits": ready needs at least 80% of circuits closed).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

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


class CircuitOpen(Exception):
    """The circuit turned the call away: open, or half-open with its trial already in flight."""


class Permit:
    """One admitted call. Report :meth:`success` or :meth:`failure` once; the first verdict
    counts, later ones are ignored, and leaving the ``attempt`` block without one gives the
    slot back without changing the state."""

    __slots__ = ("_breaker", "_generation", "settled", "trial")

    def __init__(self, breaker: CircuitBreaker, generation: int, *, trial: bool) -> None:
        self._breaker = breaker
        self._generation = generation
        self.trial = trial
        self.settled = False

    @property
    def generation(self) -> int:
        """The breaker's state generation this call was admitted under."""
        return self._generation

    def success(self) -> None:
        self._breaker.settle(self, healthy=True)

    def failure(self) -> None:
        self._breaker.settle(self, healthy=False)


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
        self._trial_at = 0.0  # when an open circuit half-opens
        self._generation = 0  # bumped on every state change
        self._trial: Permit | None = None
        self._export()

    @property
    def state(self) -> State:
        """The current state (an open circuit past its wait reports half-open)."""
        if self._state is State.OPEN and self._clock() >= self._trial_at:
            self._move(State.HALF_OPEN)
        return self._state

    @property
    def trial_in_flight(self) -> bool:
        return self._trial is not None

    @contextmanager
    def attempt(self) -> Iterator[Permit]:
        """Admit one call for the ``with`` block, or raise :class:`CircuitOpen`.

        The block reports ``permit.success()`` or ``permit.failure()``. When the permit is the
        half-open trial the block runs shielded from outside cancellation (it must bound its
        own duration), and the trial slot is released when the block is left, however it is.
        """
        permit = self._admit()
        try:
            with trio.CancelScope(shield=permit.trial):
                yield permit
        finally:
            permit.settled = True
            if self._trial is permit:
                self._trial = None  # left without a verdict: the next call may try

    def _admit(self) -> Permit:
        state = self.state
        if state is State.CLOSED:
            return Permit(self, self._generation, trial=False)
        if state is State.HALF_OPEN and self._trial is None:
            self._trial = Permit(self, self._generation, trial=True)
            return self._trial
        raise CircuitOpen(f"{self.name}: circuit {state.name.lower()}")

    def settle(self, permit: Permit, *, healthy: bool) -> None:
        """A call's verdict (use ``permit.success()`` / ``permit.failure()``)."""
        if permit.settled:
            return
        permit.settled = True
        if self._trial is permit:
            self._trial = None
        if permit.generation != self._generation:
            return  # admitted under an earlier state: no say in this one
        if healthy:
            self._failures = 0
            if self._state is not State.CLOSED:
                self._move(State.CLOSED)
            return
        self._failures += 1
        if self._state is State.HALF_OPEN or self._failures >= self.failure_threshold:
            self._trial_at = self._clock() + self.open_s
            self._move(State.OPEN)

    def _move(self, to: State) -> None:
        previous, self._state = self._state, to
        self._generation += 1
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
