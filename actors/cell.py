"""One activated actor: its bounded mailbox, its message loop, and the supervisor around it.

The cell outlives the incarnations it supervises: a crash (or an admin kill) ends one
incarnation, the mailbox keeps what was queued, and after a backoff a fresh incarnation
rehydrates from the ledger and carries on. Passivation ends the cell itself; it happens only in
a synchronous step that finds the mailbox empty, removes the cell from the registry and closes
the mailbox, so a later message goes to the next cell, which starts only after this one stopped.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

import trio

from actors.address import ActorAddress
from actors.config import ActorConfig
from actors.envelope import Envelope
from actors.errors import ActorCrashed, ActorFailed, DependencyUnavailable, Refused
from actors.instruments import ActorInstruments
from actors.kind import Actor, ActorKind
from actors.ports import OUTAGES, DependencyDown
from actors.supervision import RestartBudget

log = logging.getLogger("bff.actors")

Status = Literal["activating", "running", "backoff", "stopping", "failed"]
Ending = Literal["crashed", "passivated", "unavailable"]


class CellHooks(Protocol):
    """How a cell tells the registry about its lifecycle (all called synchronously)."""

    def passivating(self, cell: Cell) -> None: ...
    def stopped(self, cell: Cell) -> None: ...
    def escalated(self, cell: Cell) -> None: ...
    def retired(self, cell: Cell) -> None: ...


class Cell:
    """Mailbox + supervisor of one virtual actor inside one process."""

    def __init__(
        self,
        address: ActorAddress,
        kind: ActorKind,
        config: ActorConfig,
        metrics: ActorInstruments,
        hooks: CellHooks,
    ) -> None:
        self.address = address
        self.kind = kind
        self._config = config
        self._metrics = metrics
        self._hooks = hooks
        self._send, self._receive = trio.open_memory_channel[Envelope](config.mailbox_size)
        self.status: Status = "activating"
        self.created_at = trio.current_time()
        self.incarnation_at = self.created_at
        self.restarts = 0
        self.processed = 0
        self.last_error: str | None = None
        self.stopped = trio.Event()
        self._budget = RestartBudget(
            config.max_restarts,
            config.restart_window_s,
            config.restart_min_s,
            config.restart_max_s,
            config.restart_jitter,
        )
        self._scope: trio.CancelScope | None = None
        self._kill_reason: str | None = None
        self._cleared = trio.Event()

    # --- used by the system (other tasks) ---------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages waiting in the mailbox (not counting the one being handled)."""
        return self._send.statistics().current_buffer_used

    async def deliver(self, envelope: Envelope) -> None:
        """Enqueue, waiting while the mailbox is full (the caller bounds the wait).

        Raises ``trio.ClosedResourceError`` when the cell passivated meanwhile (look up again)
        and :class:`ActorFailed` when its supervisor gave up.
        """
        if self.status == "failed":
            raise ActorFailed(self.address, f"supervisor gave up: {self.last_error}")
        await self._send.send(envelope)

    def kill(self, reason: str) -> bool:
        """Cancel the running incarnation as a crash; the supervisor restarts it. A failed cell
        is cleared instead. ``False`` when there is nothing to kill (backing off, stopping)."""
        if self.status == "failed":
            self._cleared.set()
            return True
        if self._scope is None or self.status not in ("activating", "running"):
            return False
        self._kill_reason = reason
        self._scope.cancel()
        return True

    # --- the cell's own task ----------------------------------------------------------------

    async def run(self, predecessor: trio.Event | None) -> None:
        """Supervise incarnations until passivation or escalation."""
        try:
            if predecessor is not None:
                await predecessor.wait()  # never two incarnations of one address at once
            while await self._incarnation() == "crashed":
                if not self._budget.record_crash(trio.current_time()):
                    self._escalate()
                    with trio.move_on_after(self._config.failed_hold_s):
                        await self._cleared.wait()  # an admin kill clears it sooner
                    self._hooks.retired(self)
                    return
                self.restarts += 1
                self._metrics.actor_restarts.labels(self.kind.name).inc()
                self.status = "backoff"
                await trio.sleep(self._budget.backoff())
        finally:
            self.stopped.set()
            self._hooks.stopped(self)

    async def _incarnation(self) -> Ending:
        """Run one incarnation until it crashes (or is killed), passivates, or cannot activate
        because a dependency is down — an outage, not a bug: no restart, no crash counted."""
        actor = self.kind.factory(self.address)
        self._kill_reason = None
        self.status = "activating"
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                with trio.fail_after(self._config.activation_timeout_s):
                    await actor.activate()
                self.status = "running"
                self.incarnation_at = trio.current_time()
                await self._serve(actor)
            except OUTAGES as exc:
                if self.status == "activating":
                    self._refuse_all(exc)
                    return "unavailable"
                self._note_crash(f"{type(exc).__name__}: {exc}", exc)  # _process answers those
                return "crashed"
            except Exception as exc:
                self._note_crash(f"{type(exc).__name__}: {exc}", exc)
                return "crashed"
            finally:
                self._scope = None
        if scope.cancelled_caught:
            self._note_crash(self._kill_reason or "cancelled", None)
            return "crashed"
        await self._deactivate(actor)
        return "passivated"

    def _refuse_all(self, outage: Exception) -> None:
        """Activation met an outage: leave the registry (the next message activates afresh)
        and answer everything queued with "dependency unavailable"."""
        self.status = "stopping"
        self._hooks.passivating(self)
        self._send.close()
        unavailable = self._unavailable(outage)
        refused = 0
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            refused += 1
            if envelope.reply is not None:
                envelope.reply.fail(unavailable)
        self._receive.close()
        self._metrics.actor_unavailable.labels(self.kind.name).inc(max(refused, 1))
        log.warning(
            "actor not activated: dependency down",
            extra={"actor": str(self.address), "error": str(outage)[:300], "refused": refused},
        )

    def _unavailable(self, outage: Exception) -> DependencyUnavailable:
        dependency = outage.dependency if isinstance(outage, DependencyDown) else "postgres"
        return DependencyUnavailable(self.address, str(outage)[:300], dependency=dependency)

    async def _serve(self, actor: Actor) -> None:
        while (envelope := await self._next()) is not None:
            await self._process(actor, envelope)

    async def _next(self) -> Envelope | None:
        """The next message, or ``None`` once the actor has been idle long enough to passivate."""
        while True:
            with trio.move_on_after(self._config.idle_timeout_s):
                return await self._receive.receive()
            if self._begin_passivation():
                return None

    def _begin_passivation(self) -> bool:
        """Synchronously (no checkpoint): leave the registry and close the mailbox, if empty."""
        stats = self._send.statistics()
        if stats.current_buffer_used or stats.tasks_waiting_send:
            return False
        self.status = "stopping"
        self._hooks.passivating(self)
        self._send.close()
        return True

    async def _process(self, actor: Actor, envelope: Envelope) -> None:
        reply = envelope.reply
        if reply is not None and reply.expired():
            self._metrics.actor_expired.labels(self.kind.name).inc()
            return  # the asker already gave up: doing the work would be unobserved
        self.processed += 1
        try:
            with trio.fail_after(self._config.turn_timeout_s):
                result = await actor.handle(envelope.message)
        except Refused as exc:
            if reply is not None:
                reply.fail(exc)
        except OUTAGES as exc:  # the actor is fine; what it needs is not: answer, don't crash
            self._metrics.actor_unavailable.labels(self.kind.name).inc()
            if reply is not None:
                reply.fail(self._unavailable(exc))
        except BaseException as exc:  # incl. Cancelled from a kill: tell the asker, then crash
            if reply is not None:
                why = self._kill_reason or f"{type(exc).__name__}: {exc}"
                reply.fail(ActorCrashed(self.address, f"crashed while handling: {why}"))
            raise
        else:
            if reply is not None:
                reply.succeed(result)

    async def _deactivate(self, actor: Actor) -> None:
        with trio.move_on_after(self._config.deactivation_timeout_s):
            try:
                await actor.deactivate()
            except Exception:
                log.warning(
                    "deactivation failed", extra={"actor": str(self.address)}, exc_info=True
                )
        self._receive.close()
        self._metrics.actor_passivations.labels(self.kind.name).inc()

    def _note_crash(self, reason: str, exc: BaseException | None) -> None:
        self.last_error = reason[:300]
        log.warning(
            "actor crashed",
            extra={"actor": str(self.address), "error": self.last_error, "restarts": self.restarts},
            exc_info=exc,
        )

    def _escalate(self) -> None:
        """Budget exhausted: stop taking messages, fail what is queued, tell the registry."""
        self.status = "failed"
        self._send.close()
        failure = ActorFailed(self.address, f"supervisor gave up: {self.last_error}")
        while True:
            try:
                envelope = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if envelope.reply is not None:
                envelope.reply.fail(failure)
        self._receive.close()
        self._metrics.actor_escalations.labels(self.kind.name).inc()
        log.error(
            "actor supervisor gave up",
            extra={
                "actor": str(self.address),
                "error": self.last_error,
                "restartsInWindow": self._budget.recent,
                "windowSeconds": self._config.restart_window_s,
            },
        )
        self._hooks.escalated(self)
