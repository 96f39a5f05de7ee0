"""The embedded bus's dead-letter store: the stream ``<prefix>:_bus:_dead``
(``edge/bus/redis_streams.py`` parks entries there; see ``edge/bus/dead_letters.py``).

Entry ids are millisecond timestamps, so the 7-day retention is ``XTRIM MINID`` (run by
:meth:`RedisDeadLetters.maintain`, which the subscriber calls every minute); the depth is
``XLEN``. A replay first ``XADD``s each original message to its topic's stream, and ``XDEL``s
the dead letters only once Redis accepted those entries: a crash in between replays them again
later (consumers dedupe on the event id), never loses one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from edge.bus.dead_letters import RETENTION_S, DeadLetter, ReplayReport, copies, pick
from edge.bus.redis_streams import _call, _op, dead_letter_key, stream_key
from edge.redis_tier import RedisTier

_PAGE = 1000


def decode_entry(entry_id: bytes, fields: dict[bytes, bytes]) -> DeadLetter:
    text = {k.decode(): v for k, v in fields.items()}

    def field(name: str) -> str:
        return text.get(name, b"").decode(errors="replace")

    return DeadLetter(
        id=entry_id.decode(),
        topic=field("topic"),
        message_id=field("messageId"),
        reason=field("reason"),
        instance=field("instance"),
        attempt=int(field("attempt") or 0),
        parked_at=int(entry_id.split(b"-")[0]) / 1000,
        attributes={
            k[5:]: v.decode(errors="replace") for k, v in text.items() if k.startswith("attr.")
        },
        data=text.get("data", b""),
    )


class RedisDeadLetters:
    """``DeadLetterStore`` over the embedded bus's dead-letter stream."""

    def __init__(self, tier: RedisTier, *, maxlen: int = 100_000) -> None:
        self._tier = tier
        self._key = dead_letter_key(tier.prefix)
        self._maxlen = maxlen

    async def read(self, limit: int) -> list[DeadLetter]:
        rows = await _call(self._tier, _op("xrange", self._key, "-", "+", count=limit))
        return [decode_entry(entry_id, fields) for entry_id, fields in rows]

    async def _all(self) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        start = "-"
        while True:
            rows = await _call(self._tier, _op("xrange", self._key, start, "+", count=_PAGE))
            found.extend(decode_entry(entry_id, fields) for entry_id, fields in rows)
            if len(rows) < _PAGE:
                return found
            start = "(" + rows[-1][0].decode()

    async def replay(self, ids: Sequence[str] | None, *, dry_run: bool = False) -> ReplayReport:
        letters = await self._all()
        report = pick(letters, ids)
        if dry_run or not report.replayed:
            return report
        entries = [(stream_key(self._tier.prefix, d.topic), _fields(d)) for d in report.replayed]

        async def publish(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for key, fields in entries:
                pipe.xadd(key, fields, maxlen=self._maxlen, approximate=True)
            return await pipe.execute()

        await _call(self._tier, publish)  # raises BusUnavailable: nothing is removed
        gone = [d.id for d in copies(letters, report.replayed)]
        await _call(self._tier, _op("xdel", self._key, *gone))
        return report

    async def maintain(self) -> int:
        oldest_kept_ms = int((time.time() - RETENTION_S) * 1000)
        await _call(self._tier, _op("xtrim", self._key, minid=oldest_kept_ms, approximate=False))
        return int(await _call(self._tier, _op("xlen", self._key)))


def _fields(letter: DeadLetter) -> dict[str, str | bytes]:
    """The original message's stream fields (``edge/bus/redis_streams.py`` ``_fields``)."""
    fields: dict[str, str | bytes] = dict(letter.attributes)
    fields["orderingKey"] = ""
    fields["data"] = letter.data
    return fields
