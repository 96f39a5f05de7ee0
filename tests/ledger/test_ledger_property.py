"""Property test of the ledger under concurrency and crashes (Hypothesis + real Postgres).

Many concurrent appenders, some appends cancelled mid-flight, the writer's Postgres connection
killed at random points (``pg_terminate_backend``), stale expected versions. Whatever happens:

* every acknowledged append is present exactly once, with the position/version it was given;
* a rejected (version conflict) append is absent; an unacknowledged one is present 0 or 1 times,
  and re-appending the same events resolves it (dedupe on event id);
* positions are dense and readable in order: a reader tailing ``position > last`` during the
  run saw every row, and each stream's versions are dense and follow position order.

Examples share one database (fixtures are per test); each uses its own tenant. Generated
examples kill the writer only when their appends reach a threshold, so the ``@example`` cases
kill it early, after the first acknowledgements, and check that the kill really happened.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import trio
import trio_asyncio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ledger.appendlog import Ledger, LedgerUnavailable
from ledger.database import Database
from ledger.model import AppendResult, NewEvent, VersionConflict

SUBJECT = "melmastoon.bff.backoffice.operator.activity.v1"

op_strategy = st.tuples(
    st.integers(0, 3),  # stream
    st.integers(1, 3),  # events in the request
    st.booleans(),  # with expected_version (read first, may go stale)
    st.one_of(st.none(), st.floats(0.0, 0.004)),  # cancel after this many seconds
)
scenario = st.fixed_dictionaries(
    {
        "appenders": st.lists(
            st.lists(op_strategy, min_size=1, max_size=6), min_size=2, max_size=12
        ),
        "kills": st.lists(st.integers(0, 40), max_size=3),
    }
)


@dataclass
class Outcomes:
    acked: dict[uuid.UUID, AppendResult] = field(default_factory=dict)
    rejected: set[uuid.UUID] = field(default_factory=set)
    unknown: list[list[NewEvent]] = field(default_factory=list)
    acks: int = 0
    kills: int = 0  # writer connections terminated
    changed: trio.Event = field(default_factory=trio.Event)

    def ack(self, events: list[NewEvent], results: list[AppendResult]) -> None:
        self.acked.update({e.event_id: r for e, r in zip(events, results, strict=True)})
        self.acks += 1
        self.changed.set()
        self.changed = trio.Event()


async def appender(
    ledger: Ledger,
    tenant: str,
    number: int,
    ops: list[tuple[int, int, bool, float | None]],
    out: Outcomes,
) -> None:
    for k, (stream_no, count, expect, cancel_after) in enumerate(ops):
        stream = f"device:s{stream_no}"
        expected = None
        if expect:
            try:
                expected = await ledger.stream_version(tenant, stream)
            except LedgerUnavailable:
                continue
        events = [
            NewEvent(
                tenant=tenant,
                stream=stream,
                subject=SUBJECT,
                payload={"appender": number, "op": k, "i": i},
                expected_version=expected if i == 0 else None,
            )
            for i in range(count)
        ]
        results = None
        with trio.move_on_after(cancel_after if cancel_after is not None else 30):
            try:
                results = await ledger.append(events, timeout=5)
            except VersionConflict:
                out.rejected.update(e.event_id for e in events)
                continue
            except LedgerUnavailable:
                pass
        if results is None:
            out.unknown.append(events)
        else:
            out.ack(events, results)


async def kill_writer(database_url: str, out: Outcomes, thresholds: list[int]) -> None:
    """Terminate the writer's connection once ``acks`` reaches each threshold."""
    admin = Database(database_url, max_size=1, timeout=10)
    await admin.open()
    try:
        for threshold in sorted(thresholds):
            while out.acks < threshold:
                await out.changed.wait()
            # The writer holds one connection that runs nothing but ledger_append (its last
            # query even while idle), so after the first ack there is always one to kill.
            out.kills += await admin.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND query LIKE '%ledger_append%'"
            )
    finally:
        await admin.close()


async def tail(ledger: Ledger, start: int, seen: list[int]) -> None:
    """Poll ``position > last`` like the relay does, recording every position seen."""
    last = start
    while True:
        try:
            rows = await ledger.read_all(after_position=last, limit=100)
        except LedgerUnavailable:
            rows = []
        seen.extend(r.position for r in rows)
        last = rows[-1].position if rows else last
        await trio.sleep(0 if rows else 0.001)


def _ops(count: int, *, stream: int = 0, expect: bool = False) -> list[Any]:
    return [((stream + k) % 4, 1 + k % 3, expect, None) for k in range(count)]


# Early kills: the writer dies after the first acknowledgements, with most appends still to
# come (they must go through the reconnected writer); ``expectKills`` is checked afterwards.
EARLY_KILLS = [
    {"appenders": [_ops(5, stream=n) for n in range(3)], "kills": [1], "expectKills": 1},
    {
        "appenders": [_ops(6, stream=n, expect=n % 2 == 0) for n in range(4)],
        "kills": [1, 40],
        "expectKills": 1,
    },
    {
        "appenders": [
            [(0, 2, False, None), (1, 1, True, 0.0), (2, 3, False, 0.002), *_ops(4)],
            _ops(6, stream=1),
            _ops(6, stream=2, expect=True),
        ],
        "kills": [2],
        "expectKills": 1,
    },
]


def _with_examples(test: Any) -> Any:
    for case in EARLY_KILLS:
        test = example(case=case)(test)
    return test


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@_with_examples
@given(case=scenario)
async def test_acknowledged_appends_survive_cancels_and_kills_exactly_once(
    case: dict[str, Any],
    database_url: str,
) -> None:
    # Each example is its own trio.run: open the asyncio bridge and pools here, not in fixtures.
    async with trio_asyncio.open_loop():
        db = Database(database_url, max_size=4, timeout=10)
        writer_db = Database(database_url, max_size=2, timeout=5)
        await db.open()
        await writer_db.open()
        try:
            await run_case(case, db, writer_db, database_url)
        finally:
            await writer_db.close()
            await db.close()


async def run_case(
    case: dict[str, Any],
    db: Database,
    writer_db: Database,
    database_url: str,
) -> None:
    tenant = f"tnt-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(writer_db, call_timeout=5)
    reader = Ledger(db)
    out = Outcomes()
    seen: list[int] = []
    start = await reader.head()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(ledger.run)
            nursery.start_soon(tail, reader, start, seen)
            killer = trio.CancelScope()
            killed = trio.Event()

            async def killing() -> None:
                with killer:
                    await kill_writer(database_url, out, case["kills"])
                killed.set()

            nursery.start_soon(killing)
            async with trio.open_nursery() as appenders:
                for number, ops in enumerate(case["appenders"]):
                    appenders.start_soon(appender, ledger, tenant, number, ops, out)
            # On a busy machine the appenders may all finish before the killer's query runs:
            # let a kill whose threshold was reached land (bounded), then stop waiting for more.
            with trio.move_on_after(3):
                await killed.wait()
            killer.cancel()
            assert out.kills >= case.get("expectKills", 0), (out.kills, out.acks)
            # resolve every unknown outcome by re-appending the same events
            for events in out.unknown:
                try:
                    out.ack(events, await ledger.append(events, timeout=20))
                except VersionConflict:
                    out.rejected.update(e.event_id for e in events)
            head = await reader.head()
            with trio.fail_after(20):  # the tailing reader catches up (polling, deadline)
                while True:
                    if (seen[-1] if seen else start) >= head:
                        break
                    await trio.sleep(0.005)
            nursery.cancel_scope.cancel()

    rows = await reader.read_all(tenant=tenant, limit=10_000)
    counts = Counter(r.event_id for r in rows)
    assert all(c == 1 for c in counts.values())
    by_id = {r.event_id: r for r in rows}
    assert set(by_id) == set(out.acked)  # after re-appends every event is resolved
    for event_id, result in out.acked.items():
        assert (by_id[event_id].position, by_id[event_id].version) == (
            result.position,
            result.version,
        )
    assert not out.rejected & set(by_id)
    for stream in {r.stream for r in rows}:
        versions = [r.version for r in rows if r.stream == stream]  # rows are in position order
        assert versions == list(range(1, len(versions) + 1))

    head = await reader.head()
    assert seen == list(range(start + 1, head + 1))  # the tailing reader skipped nothing
    async with db.connection() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, min(position) AS lo, max(position) AS hi FROM ledger"
        )
    assert row is not None
    assert row["n"] == 0 or (row["lo"] == 1 and row["hi"] == head and row["n"] == head)
