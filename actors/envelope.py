"""Mailbox items and the one-shot reply slot of an ``ask``.

A reply slot is an Event plus an outcome: the actor fills it at most once, the asker waits on it
under its own deadline. A reply that arrives after the asker gave up goes nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import outcome
import trio


class Reply:
    """Where an actor puts the answer to one ``ask``."""

    __slots__ = ("_done", "_result", "deadline")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._done = trio.Event()
        self._result: outcome.Outcome[Any] | None = None

    @property
    def settled(self) -> bool:
        return self._result is not None

    def expired(self) -> bool:
        """The asker's deadline passed: doing the work now would only produce an unread reply."""
        return trio.current_time() >= self.deadline

    def succeed(self, value: Any) -> None:
        self._settle(outcome.Value(value))

    def fail(self, error: BaseException) -> None:
        self._settle(outcome.Error(error))

    def _settle(self, result: outcome.Outcome[Any]) -> None:
        if self._result is None:
            self._result = result
            self._done.set()

    async def wait(self) -> Any:
        """The reply value, or the error the actor replied with (re-raised here)."""
        await self._done.wait()
        assert self._result is not None
        return self._result.unwrap()


@dataclass(eq=False)
class Envelope:
    """One mailbox item: the message and, for ``ask``, the reply slot."""

    message: Any
    reply: Reply | None = None
    enqueued_at: float = field(default_factory=trio.current_time)
