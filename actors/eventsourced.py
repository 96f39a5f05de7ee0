"""Event sourcing for actors: command → events appended to the ledger → state folded by pure
``apply`` functions; on activation the same ``apply`` replays the stream.

The ledger write happens BEFORE the state changes, so a crash at any point leaves state that a
replay reproduces. The actor is its stream's only writer in this process; another process may
write too (two instances briefly hosting the same actor), which the optimistic
``expected_version`` turns into a :class:`VersionConflict`: the actor catches up from the ledger
and decides again on the fresh state.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
import trio

from actors.address import ActorAddress
from actors.errors import Contended
from actors.ports import EventLog
from ledger.model import NewEvent, VersionConflict

log = logging.getLogger("bff.actors")

_encoder = msgspec.json.Encoder()


S = TypeVar("S", bound=msgspec.Struct)


class Pending(NamedTuple):
    """An event a command decided on, not yet recorded."""

    subject: str
    payload: msgspec.Struct
    event_id: uuid.UUID | None = None  # a deterministic id makes a retried command idempotent


Decide = Callable[[S], Sequence[Pending]]


class EventSourced(Generic[S]):
    """Base of an actor whose state is the fold of its ledger stream.

    Subclasses provide ``initial_state`` and the pure ``apply``; they may override
    ``load_volatile`` to reload the parts of their state that live in Redis.
    """

    max_conflict_retries = 8  # instances (and workers) racing to write one aggregate
    replay_page = 1000

    def __init__(self, address: ActorAddress, log: EventLog, *, append_timeout: float = 5.0):
        self.address = address
        self._log = log
        self._append_timeout = append_timeout
        self.state: S = self.initial_state()

    def initial_state(self) -> S:
        raise NotImplementedError

    def apply(self, state: S, subject: str, payload: bytes) -> S:
        """Pure: the state after one event. Must not fail for any event it ever recorded."""
        raise NotImplementedError

    async def load_volatile(self) -> None:
        """Reload Redis-held parts of the state (default: none)."""

    @property
    def version(self) -> int:
        version: int = getattr(self.state, "version")  # noqa: B009 - every S has it
        return version

    async def activate(self) -> None:
        self.state = self.initial_state()
        await self.catch_up()
        await self.load_volatile()

    async def deactivate(self) -> None:
        """Nothing to flush: everything that matters is in the ledger already."""

    async def catch_up(self) -> None:
        """Fold every event after the current version into the state."""
        while True:
            events = await self._log.read_stream(
                self.address.tenant,
                self.address.stream,
                after_version=self.version,
                limit=self.replay_page,
            )
            for event in events:
                self._fold(event.subject, bytes(event.payload), event.version)
            if len(events) < self.replay_page:
                return

    async def execute(self, decide: Decide[S], **metadata: Any) -> bool:
        """Decide on the current state, record the events, then apply them.

        Returns ``False`` when the decision was "nothing to record". ``metadata`` fills
        ``NewEvent`` columns (``operator_id``, ``device_id``, ``request_id``).
        """
        for attempt in range(self.max_conflict_retries):
            pending = decide(self.state)
            if not pending:
                return False
            encoded = [(p.subject, _encoder.encode(p.payload)) for p in pending]
            ids = [p.event_id or uuid.uuid4() for p in pending]
            base = self.version
            events = [
                NewEvent(
                    tenant=self.address.tenant,
                    stream=self.address.stream,
                    subject=subject,
                    payload=msgspec.Raw(body),
                    event_id=event_id,
                    expected_version=base,  # the version before this request
                    occurred_at=datetime.now(UTC),
                    **metadata,
                )
                for (subject, body), event_id in zip(encoded, ids, strict=True)
            ]
            try:
                results = await self._log.append(events, timeout=self._append_timeout)
            except VersionConflict:
                log.info("stream moved on; catching up", extra={"actor": str(self.address)})
                await self.catch_up()
                await trio.sleep(_backoff(attempt))  # writers racing in step would race again
                continue
            for (subject, body), result in zip(encoded, results, strict=True):
                self._fold(subject, body, result.version)
            return True
        raise Contended(self.address, "the stream kept moving under this actor; retry")

    def _fold(self, subject: str, payload: bytes, version: int) -> None:
        state = self.apply(self.state, subject, payload)
        self.state = msgspec.structs.replace(state, version=version)


def _backoff(attempt: int) -> float:
    """Full jitter, 5 ms doubling to at most 160 ms: racing writers spread out."""
    return random.uniform(0, min(0.16, 0.005 * 2**attempt))
