"""The device's one live stream over real processes: two BFF instances sharing Redis, Postgres
and the bus, the simulator publishing domain events, desktops reading ``text/event-stream``.
Tests across instances run on ``./ops/stack up --instances 2`` (tests/support/stack.py); the
ones about one instance (or that signal a process) on a pair this module starts itself.

Negative checks ("not to that device") are made deterministic by ordering: after the event a
device must not see, one it must see is published; its next event has to be that one.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import httpx
import pytest
import redis

from tests.support.desktop import Desktop
from tests.support.fixtures import REDIS_URL, ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import PrivateRedis, ServiceProcess, wait_until
from tests.support.pubsub import Bus
from tests.support.sim import SimClient, SimHandle
from tests.support.sse import SseReader
from tests.support.stack import StackFactory, StackInstance

T, P1, P2 = "tnt-demo", "prop-demo-1", "prop-demo-2"
TOPICS = ("melmastoon.iam", "melmastoon.alert", "melmastoon.ai")
SUGGESTIONS = "/bff/backoffice/v1/ai/suggestions"
FAST = {"BFF_SSE_KEEPALIVE_S": "0.3"}


def alert(property_id: str = P1, tenant: str = T, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "tenantId": tenant,
        "propertyId": property_id,
        "alertId": extra.pop("alertId", f"al-{uuid.uuid4().hex[:10]}"),
        "severity": "high",
        "category": "maintenance",
        "title": extra.pop("title", "Boiler pressure low"),
        "occurredAt": now,
        **extra,
    }


def order(event_id: str | None) -> tuple[int, int]:
    """An event id (``<ms>-<seq>``) as something ordered."""
    assert event_id is not None
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


def publish(sim: SimClient, subject: str, data: dict[str, Any]) -> None:
    sim.post("/_sim/events", json={"subject": subject, "data": data})


def raise_alert(sim: SimClient, property_id: str = P1, tenant: str = T, **extra: Any) -> str:
    data = alert(property_id, tenant, **extra)
    publish(sim, "melmastoon.alert.raised.v1", data)
    return str(data["alertId"])


def revoke(sim: SimClient, desk: Desktop) -> None:
    sim.post(f"/_sim/iam/sessions/{desk.session_id}/revoke", json={"reason": "security"})


class Instance(Protocol):
    url: str


InstanceT = TypeVar("InstanceT", bound=Instance)


class Pair(Generic[InstanceT]):
    """Two instances on one bus, and the simulator publishing on it."""

    def __init__(
        self, sim: SimClient, first: InstanceT, second: InstanceT, public: str | None = None
    ) -> None:
        self.sim = sim
        self.first = first
        self.second = second
        self.public = public  # behind a balancer: the URL proofs name

    def desk(self, username: str = "fd.demo", tenant: str = T, at: str = "first") -> Desktop:
        bff = self.first if at == "first" else self.second
        return Desktop(bff.url, self.sim.url, username, tenant, public_url=self.public)

    def on(self, desk: Desktop, at: str) -> Desktop:
        """The same device, in the same session, talking to the other instance."""
        bff = self.first if at == "first" else self.second
        return Desktop(
            bff.url, self.sim.url, device=desk.device, sign_in=False, public_url=self.public
        )


ProcPair = Pair[ServiceProcess]  # processes this module starts
StackPair = Pair[StackInstance]  # ./ops/stack up --instances 2


def start_pair(
    start_bff: ServiceFactory, start_sim: Callable[..., SimHandle], bus: Bus, **env: str
) -> ProcPair:
    sim = start_sim(
        SIM_BUS="auto", BFF_REDIS_PREFIX=bus.prefix, BFF_REDIS_SESSION_URL=REDIS_URL, **bus.env
    )
    names = [f"sse-{uuid.uuid4().hex[:4]}-{n}" for n in (1, 2)]
    procs = [
        start_bff(SIM_URL=sim.url, BFF_INSTANCE_ID=name, **FAST, **bus.env, **env) for name in names
    ]
    for name, proc in zip(names, procs, strict=True):
        bus.assert_serves(proc)
        for topic in TOPICS:
            bus.wait_subscribed(name, topic)
    return Pair(sim, procs[0], procs[1])


def stack_pair(start_stack: StackFactory, bus: Bus, **env: str) -> StackPair:
    """The two instances of ``./ops/stack up --instances 2`` on ``bus``, each subscribed."""
    stack = start_stack(2, **FAST, **bus.env, **env)
    for ident in stack.ids:
        for topic in TOPICS:
            bus.wait_subscribed(ident, topic)
    first, second = stack.processes
    return Pair(SimClient(stack.sim), first, second, public=stack.lb)


@pytest.fixture
def embedded(redis_prefix: str) -> Bus:
    return Bus("embedded", redis_prefix, env={"BFF_BUS": "embedded", "PUBSUB_EMULATOR_HOST": ""})


@pytest.fixture
def pair(start_bff: ServiceFactory, start_sim: Callable[..., SimHandle], embedded: Bus) -> ProcPair:
    return start_pair(start_bff, start_sim, embedded)


@pytest.fixture
def stacked(start_stack: StackFactory, embedded: Bus) -> StackPair:
    return stack_pair(start_stack, embedded)


def feed_length(prefix: str, desk: Desktop) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.xlen(f"{prefix}:{T}:device:{desk.device_id}:feed"))
    finally:
        client.close()


# --- one instance ------------------------------------------------------------------------------


def test_stream_shows_keepalives_an_alert_and_ends_on_force_logout(
    pair: ProcPair,
) -> None:
    desk = pair.desk()
    with SseReader(desk, f"?propertyId={P1}", channels=None) as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"].startswith("no-cache")
        wait_until(lambda: stream.parsed.comments >= 2, 10, "keep-alive comments")
        assert stream.parsed.retry == 3000
        alert_id = raise_alert(pair.sim)
        shown = stream.next_of("alert")
        hint = stream.next_of("dashboard.hint")  # an alert makes the property's views stale
        assert hint.data["propertyId"] == P1 and order(hint.id) > order(shown.id)
        assert (shown.event, shown.data["alertId"], shown.data["propertyId"]) == (
            "alert",
            alert_id,
            P1,
        )
        assert shown.id is not None and "tenantId" not in shown.data
        revoke(pair.sim, desk)
        ended = stream.next()
        assert (ended.event, ended.data["kind"]) == ("session", "force_logout")
        assert order(ended.id) > order(hint.id)
        assert stream.rest() == []  # and the server closed the stream


def test_bad_stream_requests_are_refused_with_the_field_named(pair: ProcPair) -> None:
    desk = pair.desk()
    bad = SseReader(desk, "?channels=ai,weather", expect=400)
    assert b"channels" in bad.body and b"VALIDATION_FAILED" in bad.body
    bad = SseReader(desk, "?propertyId=prop-other-1", expect=403)
    assert b"PROPERTY_OUT_OF_SCOPE" in bad.body
    bad = SseReader(desk, "", last_event_id="yesterday", expect=400)
    assert b"Last-Event-ID" in bad.body


def test_a_device_opening_streams_in_a_loop_is_throttled_and_holds_one(
    start_bff: ServiceFactory, start_sim: Callable[..., SimHandle], embedded: Bus
) -> None:
    pair = start_pair(start_bff, start_sim, embedded, BFF_SSE_OPENS_PER_MINUTE="3")
    desk = pair.desk()
    streams = [SseReader(desk) for _ in range(3)]
    for older in streams[:2]:
        assert older.next().data == {"kind": "replaced"}
        older.rest()
    refused = SseReader(desk, expect=429)
    assert b"RATE_LIMITED" in refused.body
    assert 0 < int(refused.response.headers["retry-after"]) <= 60
    alert_id = raise_alert(pair.sim)
    assert streams[2].next().data["alertId"] == alert_id
    streams[2].close()


# --- across instances --------------------------------------------------------------------------


@pytest.mark.parametrize("bus", ["embedded", "pubsub"], indirect=True)
def test_force_logout_reaches_a_device_streaming_from_the_other_instance(
    start_stack: StackFactory, bus: Bus
) -> None:
    pair = stack_pair(start_stack, bus)
    desk = pair.desk(at="first")
    assert desk.get("/bff/backoffice/v1/_test/whoami").status_code == 200
    with SseReader(pair.on(desk, "second")) as stream:
        revoke(pair.sim, desk)
        ended = stream.next()
        assert ended.event == "session"
        assert ended.data == {"kind": "force_logout", "reason": "security"}
        assert stream.rest() == []


def test_resume_on_the_other_instance_misses_nothing_and_repeats_nothing(
    stacked: StackPair, redis_prefix: str
) -> None:
    pair = stacked
    desk = pair.desk(at="first")
    with SseReader(desk) as stream:
        seen = [raise_alert(pair.sim) for _ in range(2)]
        events = [stream.next(), stream.next()]
        assert [e.data["alertId"] for e in events] == seen
    last_id = events[-1].id
    missed = [raise_alert(pair.sim) for _ in range(3)]
    # each alert is two entries of the feed: the alert, and the dashboard hint it causes
    wait_until(lambda: feed_length(redis_prefix, desk) == 10, 10, "alerts in the device's feed")
    with SseReader(pair.on(desk, "second"), last_event_id=last_id) as resumed:
        got = [resumed.next() for _ in range(3)]
        assert [e.data["alertId"] for e in got] == missed
        live = raise_alert(pair.sim)
        after = resumed.next()
        assert after.data["alertId"] == live
        ids = [order(e.id) for e in [*events, *got, after]]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_an_id_older_than_the_history_gets_a_history_gap_then_live_events(
    start_stack: StackFactory, embedded: Bus
) -> None:
    pair = stack_pair(start_stack, embedded, BFF_SSE_HISTORY="16")
    desk = pair.desk()
    with SseReader(desk) as stream:
        first_id = raise_alert(pair.sim)
        old = stream.next()
        assert old.data["alertId"] == first_id
        for _ in range(17):
            raise_alert(pair.sim)
        for _ in range(17):
            stream.next()
    with SseReader(pair.on(desk, "second"), last_event_id=old.id) as resumed:
        gap = resumed.next()
        assert (gap.event, gap.data) == ("session", {"kind": "reconnect", "reason": "history_gap"})
        live = raise_alert(pair.sim)
        assert resumed.next().data["alertId"] == live


def test_a_newer_stream_replaces_the_older_across_instances(stacked: StackPair) -> None:
    pair = stacked
    desk = pair.desk(at="first")
    older = SseReader(desk)
    with SseReader(pair.on(desk, "second")) as newer:
        replaced = older.next()
        assert (replaced.event, replaced.data) == ("session", {"kind": "replaced"})
        assert older.rest() == []
        alert_id = raise_alert(pair.sim)
        shown = newer.next()
        assert shown.data.get("alertId") == alert_id, shown


def test_an_alert_reaches_every_device_of_its_property_and_no_other(
    stacked: StackPair,
) -> None:
    pair = stacked
    front = pair.desk("fd.demo", at="first")
    housekeeping = pair.desk("hk.demo", at="second")
    gm = pair.desk("gm.demo", at="second")
    other_tenant = pair.desk("fd.other", "tnt-other", at="first")
    with (
        SseReader(front) as s1,
        SseReader(housekeeping) as s2,
        SseReader(gm, f"?propertyId={P2}") as s3,
        SseReader(other_tenant) as s4,
    ):
        mine = raise_alert(pair.sim, P1)
        assert s1.next().data["alertId"] == mine
        assert s2.next().data["alertId"] == mine
        second = raise_alert(pair.sim, P2)  # gm's stream follows prop-demo-2 only
        assert s3.next().data["alertId"] == second
        # the same ids, another tenant: tnt-other's device sees only its own property's
        other = raise_alert(pair.sim, "prop-other-1", "tnt-other")
        assert s4.next().data["alertId"] == other


def test_sigterm_drains_every_stream_with_reconnect(pair: ProcPair) -> None:
    desk = pair.desk(at="first")
    stream = SseReader(desk)  # claimed: the headers come once the device's actor granted it
    pair.first.signal(signal.SIGTERM)
    drained = stream.next()
    assert (drained.event, drained.data) == ("session", {"kind": "reconnect"})
    assert stream.rest() == []
    assert pair.first.wait(20) == 0
    assert '"msg":"streams drained"' in pair.first.output()


def test_a_slow_consumer_is_cut_off_without_delaying_the_others(
    start_bff: ServiceFactory, start_sim: Callable[..., SimHandle], embedded: Bus
) -> None:
    pair = start_pair(start_bff, start_sim, embedded, BFF_SSE_BUFFER="4")
    slow = pair.desk("fd.demo")
    quick = pair.desk("hk.demo")
    with SlowStream(slow) as stuck, SseReader(quick) as fast:
        sent = [raise_alert(pair.sim, title="x" * 480) for _ in range(200)]
        got = [fast.next().data["alertId"] for _ in sent]
        assert got == sent
        wait_until(stuck.closed_by_server, 20, "the slow stream to be cut off")
    metrics = httpx.get(pair.first.url + "/metrics", timeout=10).text
    assert 'bff_sse_cut_total{reason="slow_consumer"}' in metrics


class SlowStream:
    """A stream whose reader never reads: the socket's buffers fill, then the server's."""

    def __init__(self, desk: Desktop) -> None:
        import socket
        from urllib.parse import urlsplit

        url = urlsplit(desk.bff_url)
        path = "/bff/backoffice/v1/sse/stream"
        headers = desk.headers("GET", path, Accept="text/event-stream")
        self.sock = socket.create_connection((url.hostname, url.port))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        head = f"GET {path} HTTP/1.1\r\nHost: {url.netloc}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        self.sock.sendall((head + "\r\n").encode())

    def closed_by_server(self) -> bool:
        """Drain what is buffered; True once the server closed the connection."""
        self.sock.setblocking(False)
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return True
        except BlockingIOError:
            return False

    def __enter__(self) -> SlowStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_decided_suggestion_leaves_every_device(stacked: StackPair) -> None:
    pair = stacked
    front = pair.desk("fd.demo", at="first")
    manager = pair.desk("gm.demo", at="second")
    with SseReader(front, channels="ai") as s1, SseReader(manager, channels="ai") as s2:
        sid = f"sg-{uuid.uuid4().hex[:10]}"
        now = datetime.now(UTC)
        suggestion = {
            "tenantId": T,
            "propertyId": P1,
            "suggestionId": sid,
            "category": "pricing",
            "title": "Raise tonight's rate for deluxe rooms",
            "confidence": 0.82,
            "expiresAt": (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z"),
            "occurredAt": now.isoformat().replace("+00:00", "Z"),
        }
        publish(pair.sim, "melmastoon.ai.suggestion.created.v1", suggestion)
        for stream in (s1, s2):
            shown = stream.next()
            assert (shown.event, shown.data["suggestionId"]) == ("ai.suggestion", sid)
        listed = manager.get(SUGGESTIONS, params={"propertyId": P1}).json()
        assert sid in {i["suggestionId"] for i in listed["items"]}
        decided = front.post(
            f"/bff/backoffice/v1/ai/suggestions/{sid}/decide",
            json={"propertyId": P1, "decision": "accept"},
        )
        assert decided.status_code == 200, decided.text
        for stream in (s1, s2):
            gone = stream.next()
            assert gone.event == "ai.suggestion.invalidated"
            assert (gone.data["suggestionId"], gone.data["propertyId"]) == (sid, P1)
            # ours ("decided"), or ai-orchestrator's own invalidation if it came first: one
            # either way (they share the feed key)
            assert gone.data["reason"].startswith("decided")
        # nothing twice: the next event on each stream is the next suggestion
        publish(
            pair.sim,
            "melmastoon.ai.suggestion.created.v1",
            {**suggestion, "suggestionId": "sg-next"},
        )
        for stream in (s1, s2):
            assert stream.next().data["suggestionId"] == "sg-next"
        listed = manager.get(SUGGESTIONS, params={"propertyId": P1}).json()
        assert sid not in {i["suggestionId"] for i in listed["items"]}


# --- the session tier restarts (F-34) -----------------------------------------------------------


@pytest.fixture
def private_redis(log_dir: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(log_dir)
    yield server
    server.stop()


@pytest.mark.parametrize("bus", ["pubsub"], indirect=True)
def test_streams_recover_after_the_session_tier_restarts_and_lose_nothing(
    start_stack: StackFactory, bus: Bus, private_redis: PrivateRedis
) -> None:
    """The session tier (feeds, ownership, node channels) restarts empty under an open stream;
    an alert published while it is down is delivered once it is back, and so is the next."""
    tier = {"BFF_REDIS_SESSION_URL": private_redis.url}
    pair = stack_pair(start_stack, bus, **tier)
    desk = pair.desk(at="first")
    with SseReader(pair.on(desk, "second")) as stream:
        before = raise_alert(pair.sim)
        assert stream.next().data["alertId"] == before
        private_redis.stop()
        during = raise_alert(pair.sim)
        private_redis.start()
        after_restart = stream.next(timeout=30)
        assert after_restart.data["alertId"] == during
        later = raise_alert(pair.sim)
        assert stream.next().data["alertId"] == later
        assert not stream.closed.is_set()


# --- the audit trail ---------------------------------------------------------------------------


def test_every_event_shown_is_in_the_ledger(pair: ProcPair, database_url: str) -> None:
    desk = pair.desk()
    with SseReader(desk) as stream:
        alert_id = raise_alert(pair.sim)
        shown = stream.next()
    rows = [
        p
        for s, p in ledger_subjects(database_url, f"property-feed:{P1}")
        if s.endswith("sse.delivered.v1")
    ]
    assert any(
        r["key"] == f"alert:{alert_id}" and desk.device_id in r["deviceIds"] for r in rows
    ), rows
    assert shown.data["alertId"] == alert_id
