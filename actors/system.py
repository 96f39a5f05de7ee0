"""The actor system: a registry of virtual actors keyed by address, activated on demand.

``tell`` and ``ask`` look the address up, activating it when absent (Orleans-style virtual
actors); the registry holds at most one cell per address, so an actor is never active twice in
this process. All cells run in the system's nursery: cancelling :meth:`ActorSystem.run` stops
every actor; one actor's crash is handled by its own supervisor and never reaches the nursery.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from actors.address import ActorAddress
from actors.cell import Cell, Status
from actors.config import ActorConfig
from actors.envelope import Envelope, Reply
from actors.errors import (
    AskTimeout,
    OverloadedError,
    SystemNotRunning,
    UnknownKind,
    WrongMessage,
)
from actors.instruments import ActorInstruments
from actors.kind import ActorKind
from schemas.health import DependencyCheck

log = logging.getLogger("bff.actors")


@dataclass(frozen=True)
class ActorInfo:
    """One live actor as introspection shows it."""

    address: ActorAddress
    status: Status
    mailbox_depth: int
    restarts: int
    processed: int
    age_s: float
    since_restart_s: float
    last_error: str | None


class ActorSystem:
    """Registry, delivery (tell/ask) and control (kill, list) of the process's actors."""

    def __init__(
        self,
        kinds: Sequence[ActorKind],
        config: ActorConfig,
        metrics: ActorInstruments | None = None,
    ) -> None:
        self.config = config
        self.kinds = {kind.name: kind for kind in kinds}
        self._metrics = metrics = metrics if metrics is not None else ActorInstruments()
        self._cells: dict[ActorAddress, Cell] = {}
        self._stopping: dict[ActorAddress, Cell] = {}
        self._nursery: trio.Nursery | None = None
        self._rng = random.Random()
        for name in self.kinds:
            metrics.actors_active.labels(name).set_function(self._counter(name, live=True))
            metrics.actor_mailbox_depth.labels(name).set_function(self._depth_of(name))
            metrics.actors_failed.labels(name).set_function(self._counter(name, live=False))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Host the actors until cancelled (start with ``nursery.start``)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    # --- delivery ---------------------------------------------------------------------------

    async def tell(
        self, address: ActorAddress, message: Any, *, timeout: float | None = None
    ) -> None:
        """Enqueue ``message``; wait while the mailbox is full, at most ``timeout`` seconds
        (then :class:`OverloadedError`). Returns when enqueued, not when handled."""
        self._check(address, message)
        limit = self.config.tell_timeout_s if timeout is None else timeout
        await self._enqueue(address, Envelope(message), trio.current_time() + limit, limit)

    async def ask(
        self, address: ActorAddress, message: Any, *, timeout: float | None = None
    ) -> Any:
        """Send ``message`` and wait for the reply, all within ``timeout`` seconds.

        Raises :class:`OverloadedError` (never enqueued), :class:`AskTimeout` (enqueued, no
        reply in time), or what the actor replied with (``ActorCrashed``, ``CommandRejected``,
        ``ActorFailed``).
        """
        self._check(address, message)
        limit = self.config.ask_timeout_s if timeout is None else timeout
        deadline = trio.current_time() + limit
        reply = Reply(deadline)
        await self._enqueue(address, Envelope(message, reply), deadline, limit)
        with trio.move_on_at(deadline):
            return await reply.wait()
        self._metrics.actor_ask_timeouts.labels(address.kind).inc()
        raise AskTimeout(address, limit)

    async def _enqueue(
        self, address: ActorAddress, envelope: Envelope, deadline: float, limit: float
    ) -> None:
        cell: Cell | None = None
        with trio.move_on_at(deadline):
            while True:
                cell = self._cell_for(address)
                try:
                    await cell.deliver(envelope)
                    return
                except trio.ClosedResourceError:
                    continue  # it passivated (or gave up) while we waited: look up again
        self._metrics.actor_overloaded.labels(address.kind).inc()
        raise OverloadedError(address, cell.depth if cell else 0, limit)

    def _check(self, address: ActorAddress, message: Any) -> None:
        kind = self.kinds.get(address.kind)
        if kind is None:
            raise UnknownKind(f"no actor kind {address.kind!r}")
        if not isinstance(message, kind.accepts):
            raise WrongMessage(f"{address.kind} does not accept {type(message).__name__}")

    def _cell_for(self, address: ActorAddress) -> Cell:
        """The live cell for ``address``, activating one if there is none (synchronous)."""
        cell = self._cells.get(address)
        if cell is not None:
            return cell
        if self._nursery is None:
            raise SystemNotRunning("the actor system is not running")
        if len(self._cells) >= self.config.max_active:
            limit = self.config.max_active
            raise OverloadedError(address, 0, 0.0, f"{limit} actors active: no room to activate")
        cell = Cell(address, self.kinds[address.kind], self.config, self._metrics, self)
        predecessor = self._stopping.get(address)
        self._cells[address] = cell
        self._metrics.actor_activations.labels(address.kind).inc()
        self._nursery.start_soon(
            cell.run, predecessor.stopped if predecessor else None, name=f"actor {address}"
        )
        return cell

    # --- hooks called by cells --------------------------------------------------------------

    def passivating(self, cell: Cell) -> None:
        if self._cells.get(cell.address) is cell:
            del self._cells[cell.address]
        self._stopping[cell.address] = cell

    def stopped(self, cell: Cell) -> None:
        if self._stopping.get(cell.address) is cell:
            del self._stopping[cell.address]
        if cell.status != "failed" and self._cells.get(cell.address) is cell:
            del self._cells[cell.address]  # ended by cancellation (shutdown)

    def escalated(self, cell: Cell) -> None:
        """The cell stays registered as failed for ``failed_hold_s``: messages to it fail fast
        and readiness reports it; then (or on an admin kill) it is retired."""

    def retired(self, cell: Cell) -> None:
        if self._cells.get(cell.address) is cell:
            del self._cells[cell.address]
            log.info("failed actor retired", extra={"actor": str(cell.address)})

    # --- introspection and control ----------------------------------------------------------

    @property
    def metrics(self) -> ActorInstruments:
        """The runtime's instruments (routing counts what it drops on them)."""
        return self._metrics

    def actors(self, *, kind: str | None = None, tenant: str | None = None) -> list[ActorInfo]:
        now = trio.current_time()
        return [
            ActorInfo(
                address=cell.address,
                status=cell.status,
                mailbox_depth=cell.depth,
                restarts=cell.restarts,
                processed=cell.processed,
                age_s=round(now - cell.created_at, 3),
                since_restart_s=round(now - cell.incarnation_at, 3),
                last_error=cell.last_error,
            )
            for cell in self._select(kind, tenant)
        ]

    def failed(self) -> list[ActorAddress]:
        return sorted(a for a, c in self._cells.items() if c.status == "failed")

    async def health(self) -> DependencyCheck:
        """A readiness probe: not ready while an actor's supervisor has given up (an admin kill
        clears it). A dependency outage never shows here: that dependency's probe fails."""
        failed = self.failed()
        if not failed:
            return DependencyCheck(ok=True)
        # Public (``/health/ready``): a count, never addresses (they hold tenant and device ids);
        # which actors and why is logged when their supervisor gives up, and on the admin port.
        return DependencyCheck(
            ok=False,
            detail=f"supervisor gave up on {len(failed)} actor(s) (see the log or the admin port)",
        )

    def kill(self, address: ActorAddress, reason: str = "killed via admin") -> bool:
        """Crash one actor (its supervisor restarts it). Killing a failed actor clears it, so
        the next message activates it afresh."""
        cell = self._cells.get(address)
        if cell is None:
            return False
        if cell.status == "failed":
            self.retired(cell)  # now, not when its task next runs
        return cell.kill(reason)

    def kill_many(
        self,
        *,
        kind: str | None = None,
        tenant: str | None = None,
        ids: Iterable[str] | None = None,
        count: int | None = None,
        reason: str = "killed via admin",
    ) -> list[ActorAddress]:
        """Kill the selected running actors (``count`` picks that many at random). Failed
        actors are cleared only when named in ``ids``."""
        wanted = set(ids) if ids is not None else None
        candidates = [
            c.address
            for c in self._select(kind, tenant)
            if (wanted is None or c.address.id in wanted)
            and (c.status in ("activating", "running") or (wanted and c.status == "failed"))
        ]
        if count is not None and count < len(candidates):
            candidates = self._rng.sample(candidates, count)
        return sorted(a for a in candidates if self.kill(a, reason))

    def _select(self, kind: str | None, tenant: str | None) -> list[Cell]:
        return [
            cell
            for address, cell in sorted(self._cells.items())
            if (kind is None or address.kind == kind)
            and (tenant is None or address.tenant == tenant)
        ]

    def _counter(self, kind: str, *, live: bool) -> Any:
        def count() -> float:
            return float(
                sum(
                    1
                    for c in self._cells.values()
                    if c.kind.name == kind and (c.status != "failed") == live
                )
            )

        return count

    def _depth_of(self, kind: str) -> Any:
        def depth() -> float:
            return float(sum(c.depth for c in self._cells.values() if c.kind.name == kind))

        return depth
