"""Drills for the stateful dependencies and the service's own resources (FAILURE_MODES §1):
F-17 cache tier down, F-18 session tier down, F-19 session tier failover, F-20 Postgres down,
F-21 outbox backlog (bus black-holed), F-22 publish 100% failure, F-26 SSE flood, F-34 SSE
after a session-tier failover, F-37 memory under a soak, ACTORS actor kills under load.

The dependencies are broken through the fault proxy of ``./ops/stack up --instances N``
(ops/localstack/faultproxy.py), which sits between the BFF processes and the real servers: the
simulator and this drill still reach Postgres and Redis directly, so a drill observes the
ledger while the BFF cannot. Waits are deadlines (``wait_until``), never fixed sleeps; a fault
held for a while (a failover's seconds, the soak) is the scenario itself.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import trio

from edge.bus.port import CONSUMED_TOPICS
from ops.drills.admin_client import AdminClient
from ops.drills.app_probes import settled
from ops.drills.framework import (
    DrillDesktop,
    DrillFailed,
    Evidence,
    ProxyMode,
    Stack,
    drill,
    metric_in,
    scrape,
    wait_until,
)
from ops.drills.kill import kill_rounds
from ops.drills.load import LoadRun
from ops.drills.state_probes import (
    DEMO_PROPERTY,
    LiveStream,
    StreamEvent,
    Traffic,
    as_desktop_retries,
    bff_pids,
    change_preferences,
    check_ok,
    dashboard,
    each,
    failed_actors,
    heartbeat,
    ledger_problems,
    ledger_report,
    outcome,
    readiness,
    rss_kib,
    wait_for_event,
)

DETECT_S = 15.0  # a broken dependency shows in readiness within this (probe deadline: 2 s)
RECOVER_S = 30.0  # FAILURE_MODES F-19: < 30 s of elevated latency
DRAIN_S = 90.0  # the relay's backoff (max 30 s) plus the bus client's reconnect
CONSUME_S = 75.0  # a streaming pull cut off has been seen to resume after about a minute
DASHBOARDS = 4
RETRY_S = 0.5  # how soon a drill's desktop opens its stream again after a refusal
TENANT = "tnt-demo"


def _ready_where(stack: Stack, holds: Callable[[int, dict[str, Any]], bool]) -> Callable[[], bool]:
    return lambda: all(holds(code, body) for code, body in readiness(stack))


def _all_ready(stack: Stack) -> Callable[[], bool]:
    return _ready_where(stack, lambda code, _: code == 200)


def _gauge_everywhere(stack: Stack, ev: Evidence, dependency: str, value: float) -> None:
    values = each(stack, "bff_dependency_up", dependency=dependency)
    shown = ", ".join(f"{v:.0f}" for v in values)
    ev.check(
        all(v == value for v in values),
        f"bff_dependency_up{{dependency={dependency}}} = {value:.0f} on every process ({shown})",
    )


def _close(*desks: DrillDesktop) -> None:
    for desk in desks:
        desk.close()


# -- F-17 ------------------------------------------------------------------------------------


@drill(
    "F-17", "cache tier down: dashboards read through to the upstreams; readiness says so", ci=True
)
def cache_tier_down(stack: Stack, ev: Evidence) -> None:
    # settled: no circuit an earlier drill opened is still open on any process, so a grey
    # widget here can only be this drill's doing
    with settled(stack, ev) as desk:
        ev.check(dashboard(desk).status_code == 200, "dashboard 200 before the outage")
        calls = stack.metric("bff_upstream_requests_total")
        hits = stack.metric("bff_dashboard_cache_total", result="hit")
        warm = [dashboard(desk).status_code for _ in range(DASHBOARDS)]
        ev.check(warm == [200] * DASHBOARDS, "dashboards 200 with the cache tier up")
        ev.note(
            f"cache up: {DASHBOARDS} dashboards, "
            f"{stack.metric('bff_dashboard_cache_total', result='hit') - hits:.0f} cache hits, "
            f"{stack.metric('bff_upstream_requests_total') - calls:.0f} upstream requests"
        )
        with stack.dependency("redis-cache", "down"):
            wait_until(
                "every process reports redisCache down and stays ready (not required)",
                _ready_where(stack, lambda c, b: c == 200 and check_ok(b, "redisCache") is False),
                DETECT_S,
                ev,
            )
            _gauge_everywhere(stack, ev, "redisCache", 0)
            calls = stack.metric("bff_upstream_requests_total")
            errors = stack.metric("bff_dashboard_cache_total", result="error")
            start = time.monotonic()
            answers = [dashboard(desk) for _ in range(DASHBOARDS)]
            took = (time.monotonic() - start) / DASHBOARDS
            read_through = stack.metric("bff_upstream_requests_total") - calls
            missed = stack.metric("bff_dashboard_cache_total", result="error") - errors
            ev.check(
                all(a.status_code == 200 and a.json()["partial"] is False for a in answers),
                f"{DASHBOARDS} dashboards 200, partial=false, {took * 1000:.0f} ms each on average",
            )
            ev.check(
                read_through >= DASHBOARDS,
                f"{read_through:.0f} upstream requests for {DASHBOARDS} dashboards, "
                f"bff_dashboard_cache{{result=error}} +{missed:.0f}: read through",
            )
        wait_until("redisCache passes again on every process", _cache_back(stack), DETECT_S, ev)
        _gauge_everywhere(stack, ev, "redisCache", 1)
        ev.check(dashboard(desk).status_code == 200, "dashboard 200 after the outage")
        puts = as_desktop_retries(lambda: change_preferences(desk))
        ev.check(puts[-1] == "200", f"PUT /preferences (writes the cache) after it: {puts}")


def _cache_back(stack: Stack) -> Callable[[], bool]:
    return _ready_where(stack, lambda c, b: c == 200 and check_ok(b, "redisCache") is True)


# -- F-18 ------------------------------------------------------------------------------------


@drill(
    "F-18",
    "session tier down: mutations 503 CACHE_UNAVAILABLE, reads fall back, not ready",
    ci=True,
)
def session_tier_down(stack: Stack, ev: Evidence) -> None:
    desk = stack.desktop()
    try:
        puts = as_desktop_retries(lambda: change_preferences(desk))
        ev.check(puts[-1] == "200", f"PUT /preferences before: {puts}")
        with stack.dependency("redis-session", "down"):
            wait_until(
                "every process not ready (503) with redisSession down",
                _ready_where(stack, lambda c, b: c == 503 and "redisSession" in b.get("down", [])),
                DETECT_S,
                ev,
            )
            _gauge_everywhere(stack, ev, "redisSession", 0)
            put = outcome(change_preferences(desk, "comfortable"))
            ev.check(put == "503 CACHE_UNAVAILABLE", f"PUT /preferences answered {put}")
            stream = LiveStream(desk)
            opened = f"{stream.status} {stream.body[:200]!r}"
            ev.check(
                stream.status == 503 and b"CACHE_UNAVAILABLE" in stream.body,
                f"SSE open answered 503 CACHE_UNAVAILABLE ({opened[:60]})",
            )
            read = outcome(dashboard(desk))
            ev.check(read == "200", f"dashboard (a read) answered {read}: reads fall back")
            ev.note(f"heartbeat answered {outcome(heartbeat(desk))}")
        took = wait_until("every process ready again", _all_ready(stack), RECOVER_S, ev)
        ev.check(took < RECOVER_S, f"ready {took:.1f}s after the session tier came back")
        after = as_desktop_retries(lambda: change_preferences(desk))
        ev.check(after[-1] == "200", f"the same desktop's PUT /preferences after it: {after}")
    finally:
        desk.close()


# -- F-19 ------------------------------------------------------------------------------------


@drill("F-19", "session tier failover: seconds of latency, sessions preserved, no re-sign-in")
def session_tier_failover(stack: Stack, ev: Evidence) -> None:
    desks = [stack.desktop() for _ in range(3)]
    try:
        ev.check(all(heartbeat(d).status_code == 200 for d in desks), "3 desktops signed in")
        opened = stack.metric("bff_sessions_opened_total")
        with Traffic(desks, heartbeat) as traffic:
            wait_until("heartbeats before", lambda: traffic.count("before", "200") >= 6, 20, ev)
            traffic.phase = "failover"
            started = time.monotonic()
            with stack.dependency("redis-session", "hang"):  # the primary stops answering
                wait_until(
                    "every process sees redisSession down",
                    _ready_where(stack, lambda c, b: "redisSession" in b.get("down", [])),
                    DETECT_S,
                    ev,
                )
                stack.set_dependency("redis-session", "down")  # its connections are dropped
                wait_until(
                    "a heartbeat answered during it", lambda: traffic.count("failover") >= 3, 20, ev
                )
            traffic.phase = "after"
            wait_until("every process ready again", _all_ready(stack), RECOVER_S, ev)
            wait_until("heartbeats 200 again", lambda: traffic.count("after", "200") >= 6, 20, ev)
            elevated = time.monotonic() - started
        ev.note(f"answers: { ({p: dict(c) for p, c in traffic.answers.items()}) }")
        ev.check(
            traffic.outcomes() <= {"200", "503 CACHE_UNAVAILABLE", "503 SERVICE_UNAVAILABLE"},
            "no 401 and no 500 at any time",
        )
        ev.check(elevated < RECOVER_S, f"elevated latency for {elevated:.1f}s (< {RECOVER_S:.0f}s)")
        ev.note(
            f"slowest heartbeat: {traffic.slowest('failover'):.2f}s during, "
            f"{traffic.slowest('after'):.2f}s after"
        )
        puts = [as_desktop_retries(partial(change_preferences, d)) for d in desks]
        ev.check(
            all(p[-1] == "200" for p in puts),
            f"each desktop's mutation after it, no sign-in: {puts}",
        )
        reopened = stack.metric("bff_sessions_opened_total") - opened
        ev.check(reopened == 0, f"sessions opened again: {reopened:.0f} (session blobs intact)")
    finally:
        _close(*desks)


# -- F-20 ------------------------------------------------------------------------------------


@drill(
    "F-20", "Postgres down: mutations 503, readiness DOWN, no actor crash, back in seconds", ci=True
)
def postgres_down(stack: Stack, ev: Evidence) -> None:
    desks = [stack.desktop() for _ in range(3)]
    try:
        ev.check(all(heartbeat(d).status_code == 200 for d in desks), "3 desktops heartbeating")
        restarts = stack.metric("bff_actor_restarts_total")
        escalations = stack.metric("bff_actor_escalations_total")
        unavailable = stack.metric("bff_actor_dependency_unavailable_total")
        with Traffic(desks, heartbeat) as traffic:
            wait_until("heartbeats before", lambda: traffic.count("before", "200") >= 6, 20, ev)
            traffic.phase = "down"
            with stack.dependency("postgres", "down"):
                wait_until(
                    "every process not ready with postgres down",
                    _ready_where(stack, lambda c, b: c == 503 and "postgres" in b.get("down", [])),
                    DETECT_S,
                    ev,
                )
                _gauge_everywhere(stack, ev, "postgres", 0)
                wait_until(
                    "heartbeats answered 503 SERVICE_UNAVAILABLE",
                    lambda: traffic.count("down", "503 SERVICE_UNAVAILABLE") >= 6,
                    30,
                    ev,
                )
                put = outcome(change_preferences(desks[0]))
                ev.check(put == "503 SERVICE_UNAVAILABLE", f"PUT /preferences answered {put}")
                ev.note(
                    f"dashboard (no Postgres on its path) answered {outcome(dashboard(desks[0]))}"
                )
                traffic.phase = "restoring"
            wait_until("every process ready again", _all_ready(stack), RECOVER_S, ev)
            traffic.phase = "after"
            wait_until("heartbeats 200 again", lambda: traffic.count("after", "200") >= 6, 30, ev)
        ev.note(f"answers: { ({p: dict(c) for p, c in traffic.answers.items()}) }")
        ev.check(
            traffic.outcomes() <= {"200", "503 SERVICE_UNAVAILABLE"}, "only 200 or 503: never 500"
        )
        _no_actor_crash(stack, ev, restarts, escalations)
        answered = stack.metric("bff_actor_dependency_unavailable_total") - unavailable
        ev.check(answered >= 1, f"actors answered 'unavailable' {answered:.0f} times, not crashed")
        problems = ledger_problems(ledger_report(stack), "positions", "versions")
        ev.check(not problems, f"ledger positions gap-free, versions dense {problems[:2]}")
    finally:
        _close(*desks)


def _no_actor_crash(stack: Stack, ev: Evidence, restarts: float, escalations: float) -> None:
    restarted = stack.metric("bff_actor_restarts_total") - restarts
    escalated = stack.metric("bff_actor_escalations_total") - escalations
    ev.check(
        restarted == 0 and escalated == 0,
        f"actor restarts +{restarted:.0f}, escalations +{escalated:.0f}",
    )
    failed = failed_actors(stack)
    ev.check(failed == 0, f"failed actors: {failed}")


# -- F-21, F-22 --------------------------------------------------------------------------------


@drill(
    "F-21", "outbox backlog: the bus black-holed, rows wait in the ledger, drain to 0, none lost"
)
def outbox_backlog(stack: Stack, ev: Evidence) -> None:
    _bus_outage(stack, ev, "hang", ("pubsub", "pubsub-publish"))


@drill("F-22", "Pub/Sub publish 100% failure: failures counted, outbox queues, recovers")
def publish_failure(stack: Stack, ev: Evidence) -> None:
    # Publishing alone fails, as with a revoked publisher role or an exhausted quota; the
    # streaming pulls are untouched. (Cutting their connections would also trip the emulator:
    # it never forgets a pull whose connection died — a NoSuchMethodError in its gRPC server —
    # and keeps sending the ordering keys it gave that pull down it, for good.)
    _bus_outage(stack, ev, "down", ("pubsub-publish",))


def _relay(stack: Stack) -> tuple[int, int]:
    """(ledger head, the bus relay's cursor), read from the ledger's own tables."""
    report = ledger_report(stack)
    return report.head, report.relay.get("bus", 0)


def _bus_outage(stack: Stack, ev: Evidence, mode: ProxyMode, names: tuple[str, ...]) -> None:
    if stack.faults_url is None:
        ev.fail("no fault proxy: start the stack with ./ops/stack up --instances N")
    routes = httpx.get(f"{stack.faults_url}/proxies", timeout=10.0).json()
    ev.check(
        set(names) <= set(routes) and routes["pubsub"]["connections"] > 0,
        f"the BFF reaches Pub/Sub through the proxy's {', '.join(names)} (not the embedded bus)",
    )
    wait_until("the relay caught up before", lambda: _caught_up(stack), DRAIN_S, ev)
    head, cursor = _relay(stack)
    failures = stack.metric("bff_relay_publish_failures_total")
    ev.note(f"before: ledger head {head}, relay cursor {cursor}")
    desks: list[DrillDesktop] = []
    try:
        with contextlib.ExitStack() as outage:
            for name in names:
                outage.enter_context(stack.dependency(name, mode))
            desks = [stack.desktop() for _ in range(4)]  # each opens a session: ledger rows
            answers = [outcome(heartbeat(desk)) for desk in desks]
            ev.check(
                answers == ["200"] * len(desks), f"desktops served with the bus out: {answers}"
            )
            wait_until("rows appended to the ledger", lambda: _relay(stack)[0] > head, 20, ev)
            wait_until(
                "publish failures counted",
                lambda: stack.metric("bff_relay_publish_failures_total") > failures,
                30,
                ev,
            )
            during_head, during_cursor = _relay(stack)
            ev.check(
                during_cursor < during_head,
                f"outbox depth {during_head - during_cursor} rows (head {during_head}, "
                f"cursor {during_cursor}): rows wait in the ledger",
            )
            failed = stack.metric("bff_relay_publish_failures_total") - failures
            ev.note(f"publish failures while out: {failed:.0f}")
        took = wait_until(
            f"the relay published through position {during_head}",
            lambda: _relay(stack)[1] >= during_head,
            DRAIN_S,
            ev,
        )
        ev.note(f"backlog of {during_head - during_cursor} rows drained in {took:.1f}s")
        wait_until("the leading relay's lag is 0", lambda: _leader_lag(stack) == 0, DRAIN_S, ev)
        problems = ledger_problems(ledger_report(stack), "positions", "relay")
        ev.check(not problems, f"ledger gap-free and relay caught up: nothing lost {problems[:2]}")
        _bus_consumes_again(stack, ev)
    finally:
        _close(*desks)


def _caught_up(stack: Stack) -> bool:
    head, cursor = _relay(stack)
    return cursor >= head


def _leader_lag(stack: Stack) -> float:
    """``bff_relay_lag_events`` of the process whose relay published furthest (the leader: a
    standby keeps the gauges of its last lead)."""
    samples = [scrape(url) for url in stack.instance_urls]
    leader = max(samples, key=lambda s: metric_in(s, "bff_relay_position"))
    return metric_in(leader, "bff_relay_lag_events")


def _bus_consumes_again(stack: Stack, ev: Evidence) -> None:
    """The way in too: a probe event on every topic the BFF consumes reaches every process
    (each has a subscription per topic, each with its own streaming pull). A probe names only
    the tenant, so the router finds no actor for it: handled, and nothing else happens."""
    consumed = each(stack, "bff_bus_consumed_events_total", outcome="handled")
    for topic in CONSUMED_TOPICS:
        probe = {"subject": f"{topic}.drill.probe.v1", "data": {"tenantId": TENANT}}
        stack.sim("POST", "/_sim/events", json=probe)
    wanted = len(CONSUMED_TOPICS)

    def everyone() -> bool:
        now = each(stack, "bff_bus_consumed_events_total", outcome="handled")
        return all(a - b >= wanted for a, b in zip(now, consumed, strict=True))

    try:
        took = wait_until(
            f"every process consumes a probe on each of its {wanted} topics",
            everyone,
            CONSUME_S,
            ev,
        )
    except DrillFailed:
        now = each(stack, "bff_bus_consumed_events_total", outcome="handled")
        got = [f"{a - b:.0f}/{wanted}" for a, b in zip(now, consumed, strict=True)]
        ev.note(
            f"probes consumed per process: {', '.join(got)}; publishing recovered, consuming"
            " not: see the subscriber's log and `bff_bus_consumed_events_total`"
        )
        raise
    if took > 10:
        ev.note(
            f"consuming resumed {took:.0f}s after the outage (publishing within seconds): the"
            " streaming pull's ack deadline bounds how long a message sent down a dead stream waits"
        )


# -- F-26 ------------------------------------------------------------------------------------

MAX_OPENS = 60  # BFF_SSE_OPENS_PER_MINUTE is 20 by default
CROWD = 8


@drill("F-26", "SSE flood: one stream per device, a loop is refused 429, streams stay bounded")
def sse_flood(stack: Stack, ev: Evidence) -> None:
    live = stack.metric("bff_sse_connections")
    desk = stack.desktop()
    crowd: list[DrillDesktop] = []
    streams: list[LiveStream] = []
    try:
        replaced = stack.metric("bff_sse_cut_total", reason="replaced")
        refused_before = stack.metric("bff_sse_refused_total", reason="too_many_streams")
        opened, told, refused = _open_in_a_loop(desk, streams)
        ev.check(opened >= 2, f"one device opened {opened} streams, each replacing the one before")
        ev.check(told == opened - 1, f"{told} older streams got session/replaced and ended")
        ev.check(
            refused is not None and refused.status == 429 and b"RATE_LIMITED" in refused.body,
            f"open #{opened + 1} refused: {refused.status if refused else 'never'} RATE_LIMITED",
        )
        assert refused is not None
        ev.note(f"Retry-After: {refused.response.headers.get('retry-after')}s")
        wait_until(
            "one live stream for the device",
            lambda: stack.metric("bff_sse_connections") == live + 1,
            10,
            ev,
        )
        cut = stack.metric("bff_sse_cut_total", reason="replaced") - replaced
        turned = stack.metric("bff_sse_refused_total", reason="too_many_streams") - refused_before
        ev.check(
            cut >= told and turned >= 1,
            f"bff_sse_cut{{replaced}} +{cut:.0f}, refused +{turned:.0f}",
        )
        crowd = [stack.desktop() for _ in range(CROWD)]
        many = [LiveStream(d) for d in crowd]
        streams += many
        codes = sorted({s.status for s in many})
        ev.check(
            codes == [200], f"{CROWD} devices at once: answers {codes} (no per-instance cap here)"
        )
        wait_until(
            f"bff_sse_connections = {live + 1 + CROWD:.0f} (one per device)",
            lambda: stack.metric("bff_sse_connections") == live + 1 + CROWD,
            10,
            ev,
        )
    finally:
        for stream in streams:
            stream.close()
        _close(desk, *crowd)
    wait_until("the streams released", lambda: stack.metric("bff_sse_connections") == live, 15, ev)


def _open_in_a_loop(
    desk: DrillDesktop, streams: list[LiveStream]
) -> tuple[int, int, LiveStream | None]:
    """Open streams as one device until one is refused: (opened, told replaced, the refused)."""
    told = 0
    for _ in range(MAX_OPENS):
        stream = LiveStream(desk)
        if stream.status != 200:
            return len(streams), told, stream
        if streams:
            older = streams[-1]
            if wait_for_event(older, lambda e: e.data.get("kind") == "replaced", 10) is not None:
                told += 1
            older.ended.wait(10)
        streams.append(stream)
    return len(streams), told, None


# -- F-34 ------------------------------------------------------------------------------------


@drill("F-34", "SSE after a session-tier failover: alerts and force-logout still reach the device")
def sse_after_failover(stack: Stack, ev: Evidence) -> None:
    desk = stack.desktop()
    stream = LiveStream(desk, channels="alerts,session")
    try:
        ev.check(stream.status == 200, "stream open")
        first = _raise_alert(stack)
        ev.check(_alert_arrives(stream, first, 15) is not None, "an alert reaches the stream")
        errors = stack.metric("bff_sse_broker_errors_total")
        with stack.dependency("redis-session", "down"):
            wait_until(
                "every process sees redisSession down",
                _ready_where(stack, lambda c, b: "redisSession" in b.get("down", [])),
                DETECT_S,
                ev,
            )
            during = _raise_alert(stack)
        back = time.monotonic()
        stream, arrived, reconnects = _follow(desk, stream, during, RECOVER_S)
        ev.check(arrived, f"the alert raised during the outage arrived (reconnects: {reconnects})")
        ev.note(f"it arrived {time.monotonic() - back:.1f}s after the tier came back")
        resubscribed = stack.metric("bff_sse_broker_errors_total") - errors
        ev.note(f"bff_sse_broker_errors +{resubscribed:.0f} (the hub re-subscribed)")
        later = _raise_alert(stack)
        ev.check(_alert_arrives(stream, later, 15) is not None, "a later alert arrives live")
        revoked = time.monotonic()
        _revoke(stack, desk)
        logout = wait_for_event(stream, lambda e: e.data.get("kind") == "force_logout", 15)
        ev.check(
            logout is not None,
            f"force_logout reached the stream in {time.monotonic() - revoked:.2f}s",
        )
    finally:
        stream.close()
        desk.close()


def _revoke(stack: Stack, desk: DrillDesktop) -> None:
    tokens = desk.device.tokens
    assert tokens is not None, "the desktop signed in"
    stack.sim("POST", f"/_sim/iam/sessions/{tokens.session_id}/revoke", json={"reason": "security"})


def _raise_alert(stack: Stack) -> str:
    body = {"kind": "alert", "tenantId": TENANT, "propertyId": DEMO_PROPERTY}
    return str(stack.sim("POST", "/_sim/raise", json=body).json()["id"])


def _alert_arrives(stream: LiveStream, alert_id: str, timeout: float) -> StreamEvent | None:
    return wait_for_event(stream, lambda e: e.data.get("alertId") == alert_id, timeout)


def _follow(
    desk: DrillDesktop, stream: LiveStream, alert_id: str, timeout: float
) -> tuple[LiveStream, bool, int]:
    """Wait for ``alert_id`` as the desktop would: on the stream, reconnecting with
    ``Last-Event-ID`` whenever the server ends it. Answers (the stream now held, whether the
    alert came, reconnects)."""
    deadline = time.monotonic() + timeout
    reconnects = 0
    while time.monotonic() < deadline:
        if _alert_arrives(stream, alert_id, deadline - time.monotonic()) is not None:
            return stream, True, reconnects
        if not stream.ended.is_set():
            break  # open, but the alert did not come in time
        if stream.status != 200:
            time.sleep(RETRY_S)  # refused while the tier settles: the desktop's retry interval
        stream.close()  # ended: the desktop reconnects where it left off
        stream = LiveStream(desk, channels="alerts,session", last_event_id=stream.last_id)
        reconnects += 1
    return stream, False, reconnects


# -- F-37 ------------------------------------------------------------------------------------

SOAK_S = float(os.environ.get("BFF_DRILL_SOAK_S", "40"))
SOAK_DESKS = 16
# Each desktop at most one request per round: 8/s, under the per-device limit (600/min), as a
# real desktop stays; the load comes from the number of desktops.
SOAK_ROUND_S = 0.125
GROWTH_LIMIT = 0.10


@drill("F-37", f"memory under a soak: RSS growth over the second half < {GROWTH_LIMIT:.0%}")
def memory_soak(stack: Stack, ev: Evidence) -> None:
    pids = bff_pids(stack)
    ev.check(bool(pids), f"BFF processes found on this machine: {pids}")
    desks = [stack.desktop() for _ in range(SOAK_DESKS)]
    samples: dict[int, list[int]] = {pid: [] for pid in pids}
    turn = iter(range(1_000_000_000))

    def mixed(desk: DrillDesktop) -> httpx.Response:
        return heartbeat(desk) if next(turn) % 2 else dashboard(desk)

    try:
        with Traffic(desks, mixed, round_s=SOAK_ROUND_S) as traffic:
            traffic.phase = "soak"
            stop = time.monotonic() + SOAK_S
            while time.monotonic() < stop:
                for pid in pids:
                    samples[pid].append(rss_kib(pid))
                time.sleep(1.0)  # the sampling period, not a synchronisation
        served = traffic.count("soak")
        answers = dict(traffic.answers.get("soak", {}))
        ev.note(f"{served} requests in {SOAK_S:.0f}s from {SOAK_DESKS} desktops: {answers}")
        ev.check(traffic.count("soak", "200") >= served * 0.99, "at least 99% answered 200")
        for pid, rss in samples.items():
            half = rss[len(rss) // 2]
            growth = (rss[-1] - half) / half if half else 0.0
            ev.check(
                growth < GROWTH_LIMIT,
                f"pid {pid}: RSS MiB start {rss[0] / 1024:.1f}, half-way {half / 1024:.1f},"
                f" end {rss[-1] / 1024:.1f} (second half {growth:+.1%})",
            )
    finally:
        _close(*desks)


# -- actor kills under load -------------------------------------------------------------------

KILL_LOAD_S = 8.0
KILL_ACTORS = 40
# Random actors each second, about one kill per actor over the run: within the supervisor's
# restart budget (5 in 30 s), so every kill is a crash-and-rehydrate, never a give-up.
KILLS_PER_ROUND = 5


@drill("ACTORS", "actors killed every second under load: no heartbeat lost, none doubled")
def actor_kills_under_load(stack: Stack, ev: Evidence) -> None:
    ev.check(bool(stack.admin_urls), "an admin endpoint (BFF_ADMIN_URLS)")
    tenant = f"drill-{uuid.uuid4().hex[:8]}"
    lines: list[str] = []

    async def run() -> tuple[Any, int]:
        client = AdminClient(stack.admin_urls[0], connections=32)
        try:
            load = LoadRun(client, actors=KILL_ACTORS, tenant=tenant, timeout=5.0, grace=10.0)
            killed = 0

            async def kill() -> None:
                nonlocal killed
                chosen = {"kind": "device", "tenant": tenant, "count": KILLS_PER_ROUND}
                killed = await kill_rounds(
                    client, chosen, every=1.0, duration=KILL_LOAD_S, out=lines.append
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill)
                report = await load.drive(KILL_LOAD_S, 16)
            return report, killed
        finally:
            await client.aclose()

    report, killed = trio.run(run)
    rounds = sum(1 for line in lines if line.startswith("round"))
    ev.note(f"{rounds} kill rounds, {killed} actors killed")
    for line in report.summary():
        ev.note(line)
    ev.check(killed > 0 and report.acked > 0, f"{killed} kills during {report.acked} heartbeats")
    ev.check(
        report.ok(), f"lost={report.lost} duplicated={report.extra} unverified={report.unverified}"
    )
