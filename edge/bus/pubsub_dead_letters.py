"""Pub/Sub's dead-letter store: the topic ``melmastoon.bff.backoffice.deadletter`` read through
the shared subscription ``bff-backoffice.deadletter`` (``edge/bus/dead_letters.py``).

The subscription keeps an unacknowledged message 7 days (``message_retention_duration``, set
when it is created: ``ensure_dead_letter_subscription``), which is the retention; its depth is
Cloud Monitoring's ``subscription/num_undelivered_messages`` (the API cannot count it).

Reading is a synchronous pull: what is pulled is held (ack deadline 60 s) and handed back at
once (``modify_ack_deadline`` 0) unless a replay removes it, so listing never consumes, and a
tool that dies mid-way loses nothing (the deadline runs out). A replay publishes each original
message to its topic, and acknowledges its dead letters only after the publish succeeded.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from typing import Any

import trio

from edge.bus.dead_letters import DeadLetter, ReplayReport, copies, pick
from edge.bus.port import BusUnavailable
from edge.bus.pubsub import (
    DEAD_LETTER_TOPIC,
    PubSubPublisher,
    ensure_dead_letter_subscription,
    make_subscriber_client,
)

# What PubSubSource.dead_letter adds to the original attributes.
_PARKING = ("sourceTopic", "messageId", "reason", "instance", "attempt")
_PULL_MAX = 1000
_ALL = 100_000  # a replay reads at most this many (the subscription's whole backlog, normally)
# A one-off read must stop at the end of the backlog, which only return_immediately says (a
# waiting pull cannot tell "empty" from "slow"); it still works, the client merely warns.
warnings.filterwarnings("ignore", "The return_immediately flag is deprecated", DeprecationWarning)


def decode_message(received: Any) -> tuple[DeadLetter, str]:
    """A pulled message as a :class:`DeadLetter`, and its ack id."""
    message = received.message
    attributes = dict(message.attributes)
    parked = {name: attributes.pop(name, "") for name in _PARKING}
    letter = DeadLetter(
        id=message.message_id,
        topic=parked["sourceTopic"],
        message_id=parked["messageId"],
        reason=parked["reason"],
        instance=parked["instance"],
        attempt=int(parked["attempt"] or 0),
        parked_at=message.publish_time.timestamp(),
        attributes=attributes,
        data=bytes(message.data),
    )
    return letter, received.ack_id


class PubSubDeadLetters:
    """``DeadLetterStore`` over the dead-letter subscription."""

    def __init__(
        self,
        project: str,
        *,
        emulator_host: str = "",
        timeout: float = 10.0,
        create_topics: bool = False,
    ) -> None:
        self._project = project
        self._timeout = timeout
        self._emulator = emulator_host
        self._publisher = PubSubPublisher(
            project, emulator_host=emulator_host, timeout=timeout, create_topics=create_topics
        )
        self._create_topics = create_topics
        self._client: Any = None
        self._path = ""

    async def open(self) -> None:
        await self._publisher.open()
        self._client = await trio.to_thread.run_sync(make_subscriber_client, self._emulator)
        if self._create_topics:
            await self._publisher.ensure_topic(DEAD_LETTER_TOPIC)
        self._path = await ensure_dead_letter_subscription(
            self._client, None, self._project, self._timeout
        )

    async def close(self) -> None:
        await self._publisher.close()
        client, self._client = self._client, None
        if client is not None:
            await trio.to_thread.run_sync(client.close, abandon_on_cancel=True)

    async def read(self, limit: int) -> list[DeadLetter]:
        pulled = await self._pull(limit)
        await self._release([ack for _, ack in pulled])
        return sorted((letter for letter, _ in pulled), key=lambda d: d.parked_at)

    async def replay(self, ids: Sequence[str] | None, *, dry_run: bool = False) -> ReplayReport:
        pulled = await self._pull(_ALL)
        letters = sorted((letter for letter, _ in pulled), key=lambda d: d.parked_at)
        acks = {letter.id: ack for letter, ack in pulled}
        report = pick(letters, ids)
        done: list[str] = []
        try:
            if not dry_run and report.replayed:
                await self._publisher.publish_to(
                    [(d.topic, d.data, "", d.attributes) for d in report.replayed]
                )
                done = [acks[d.id] for d in copies(letters, report.replayed)]
                await self._settle("acknowledge", done)
        finally:
            with trio.CancelScope(shield=True):
                await self._release([ack for ack in acks.values() if ack not in set(done)])
        return report

    async def maintain(self) -> None:
        """Retention is the subscription's own; its depth is not readable here."""
        return None

    async def _pull(self, limit: int) -> list[tuple[DeadLetter, str]]:
        client, path, timeout = self._client, self._path, self._timeout

        def pull() -> list[tuple[DeadLetter, str]]:
            found: list[tuple[DeadLetter, str]] = []
            while len(found) < limit:
                answer = client.pull(
                    request={
                        "subscription": path,
                        "max_messages": min(_PULL_MAX, limit - len(found)),
                        "return_immediately": True,
                    },
                    timeout=timeout,
                )
                if not answer.received_messages:
                    return found
                found.extend(decode_message(m) for m in answer.received_messages)
            return found

        try:
            return await trio.to_thread.run_sync(pull, abandon_on_cancel=True)
        except Exception as exc:  # the client's errors: unreachable, not found, deadline
            raise BusUnavailable(f"dead-letter pull failed: {type(exc).__name__}: {exc}") from exc

    async def _release(self, ack_ids: list[str]) -> None:
        """Hand pulled messages back at once (they stay in the store)."""
        with contextlib.suppress(BusUnavailable):  # else their ack deadline hands them back
            await self._settle("modify_ack_deadline", ack_ids)

    async def _settle(self, how: str, ack_ids: list[str]) -> None:
        client, path, timeout = self._client, self._path, self._timeout

        def settle() -> None:
            for start in range(0, len(ack_ids), _PULL_MAX):
                request: dict[str, Any] = {
                    "subscription": path,
                    "ack_ids": ack_ids[start : start + _PULL_MAX],
                }
                if how == "modify_ack_deadline":
                    request["ack_deadline_seconds"] = 0
                getattr(client, how)(request=request, timeout=timeout)

        if not ack_ids:
            return
        try:
            await trio.to_thread.run_sync(settle, abandon_on_cancel=True)
        except Exception as exc:
            raise BusUnavailable(f"dead-letter {how} failed: {type(exc).__name__}: {exc}") from exc
