"""The idempotency layer over real HTTP (a BFF process, the simulator, Postgres, Redis, DPoP
desktops): a repeated request is answered the first response with `Idempotent-Replayed: true`
and never reaches the upstream again (proved with `/_sim/calls`); the key with another request
is 422; a request while the first runs is 409; final errors are replayed, retryable ones run
again; keys are scoped per device and operator; Postgres down refuses keyed mutations with 503
before anything runs (F-20); a key whose holder crashed runs again after its lease (F-32);
expired keys are cleaned up.

The test route `/_test/idempotent/{name}` counts its handler's runs (`/_test/runs/{name}`) and
can hold a run until `/_test/gates/{name}/open`: that is how "in flight" is reached without
sleeping."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import httpx
import pytest

from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.ledger import ledger_subjects
from tests.support.procs import ServiceProcess, free_port, wait_until
from tests.support.sim import SimHandle
from tests.support.stack import StackFactory

BASE = "/bff/backoffice/v1"
RUN = f"{BASE}/_test/idempotent"
P = "prop-demo-1"
REPLAYED = "idempotent-replayed"


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url)


@pytest.fixture
def fd(bff: ServiceProcess, sim: SimHandle) -> Iterator[Desktop]:
    desk = Desktop(bff.url, sim.url, "fd.demo")
    yield desk
    desk.close()


def new_key() -> str:
    return f"key-{uuid.uuid4()}"


def run(desk: Desktop, name: str, key: str | None, **body: Any) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return desk.post(f"{RUN}/{name}", json=body, headers=headers)


class Served(Protocol):
    url: str


def runs(bff: Served, name: str) -> int:
    count: int = httpx.get(f"{bff.url}/_test/runs/{name}").json()["runs"]
    return count


def open_gate(bff: Served, name: str) -> None:
    assert httpx.post(f"{bff.url}/_test/gates/{name}/open").status_code == 200


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] == code, body
    return body


def calls(sim: SimHandle, service: str, method: str, fragment: str) -> list[dict[str, Any]]:
    return [
        c for c in sim.calls(service, kind="all") if c["method"] == method and fragment in c["path"]
    ]


def metric(bff: Served, line_start: str) -> float:
    text = httpx.get(f"{bff.url}/metrics").text
    found = [ln for ln in text.splitlines() if ln.startswith(line_start)]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in found)


def key_rows(database_url: str) -> list[dict[str, Any]]:
    import asyncpg
    import trio
    import trio_asyncio

    async def fetch() -> list[dict[str, Any]]:
        async with trio_asyncio.open_loop():
            conn = await trio_asyncio.aio_as_trio(asyncpg.connect)(database_url)
            try:
                rows = await trio_asyncio.aio_as_trio(conn.fetch)(
                    "SELECT tenant, device_id, key, state, status FROM idempotency_keys"
                )
            finally:
                await trio_asyncio.aio_as_trio(conn.close)()
        return [dict(r) for r in rows]

    return trio.run(fetch)


# --- replays through real routes ----------------------------------------------------------------


def test_a_repeated_acknowledgement_is_replayed_without_reaching_the_upstream(
    fd: Desktop, sim: SimHandle, database_url: str
) -> None:
    alerts = fd.get(f"{BASE}/alerts", params={"propertyId": P}).json()["items"]
    alert_id = alerts[0]["alertId"]
    key = new_key()
    path = f"{BASE}/alerts/{alert_id}/acknowledge"
    first = fd.post(path, json={"propertyId": P}, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert first.json()["changed"] is True and REPLAYED not in first.headers
    before = len(sim.calls("notification", kind="all"))

    again = fd.post(path, json={"propertyId": P}, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.headers[REPLAYED] == "true"
    assert again.content == first.content  # the first answer, `changed: true` and all
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["cache-control"] == "no-store"
    assert len(sim.calls("notification", kind="all")) == before  # nothing asked upstream
    assert len(calls(sim, "notification", "POST", f"/{alert_id}/acknowledge")) == 1
    assert len(ledger_subjects(database_url, f"alert:{alert_id}")) == 1

    other = alerts[1]["alertId"]  # the same key for another alert: another request
    reused = fd.post(
        f"{BASE}/alerts/{other}/acknowledge",
        json={"propertyId": P},
        headers={"Idempotency-Key": key},
    )
    assert "Idempotency-Key" in error(reused, 422, "IDEMPOTENCY_KEY_REUSED")["message"]
    assert calls(sim, "notification", "POST", f"/{other}/acknowledge") == []

    unkeyed = fd.post(path, json={"propertyId": P})  # no key: runs, and nothing is stored
    assert unkeyed.status_code == 200 and unkeyed.json()["changed"] is False
    assert REPLAYED not in unkeyed.headers
    assert [r["key"] for r in key_rows(database_url)] == [key]


def test_a_repeated_decision_reaches_ai_once_and_the_key_goes_upstream(
    fd: Desktop, sim: SimHandle
) -> None:
    sid = fd.get(f"{BASE}/ai/suggestions", params={"propertyId": P}).json()["items"][0][
        "suggestionId"
    ]
    key = new_key()
    path = f"{BASE}/ai/suggestions/{sid}/decide"
    body = {"propertyId": P, "decision": "accept"}
    first = fd.post(path, json=body, headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    again = fd.post(path, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.headers[REPLAYED] == "true"
    assert again.content == first.content
    [decided] = calls(sim, "ai", "POST", f"/{sid}/decide")
    assert decided["idempotencyKey"] == key  # forwarded: a lost answer is absorbed there
    changed = fd.post(path, json={**body, "decision": "reject"}, headers={"Idempotency-Key": key})
    error(changed, 422, "IDEMPOTENCY_KEY_REUSED")
    assert len(calls(sim, "ai", "POST", f"/{sid}/decide")) == 1


# --- what is stored -----------------------------------------------------------------------------


def test_final_errors_are_replayed_and_retryable_ones_run_again(
    fd: Desktop, bff: ServiceProcess
) -> None:
    key = new_key()
    refused = error(run(fd, "final", key, outcome="conflict"), 409, "CONFLICT")
    replay = run(fd, "final", key, outcome="conflict")
    assert replay.headers[REPLAYED] == "true"
    assert replay.json()["error"] == refused  # byte for byte: the first request's id too
    assert runs(bff, "final") == 1

    key = new_key()  # a 502 that is a verdict (the same request drifts again): kept too
    drifted = error(run(fd, "drift", key, outcome="drift"), 502, "SCHEMA_DRIFT")
    assert run(fd, "drift", key, outcome="drift").json()["error"] == drifted
    assert runs(bff, "drift") == 1

    key = new_key()
    error(run(fd, "flaky", key, outcome="unavailable"), 502, "UPSTREAM_UNAVAILABLE")
    retried = run(fd, "flaky", key, outcome="unavailable")
    error(retried, 502, "UPSTREAM_UNAVAILABLE")
    assert REPLAYED not in retried.headers and runs(bff, "flaky") == 2

    key = new_key()  # about the caller (MFA): a retry with a fresh attestation must run
    error(run(fd, "mfa", key, outcome="mfa"), 401, "MFA_INVALID_OR_USED")
    error(run(fd, "mfa", key, outcome="mfa"), 401, "MFA_INVALID_OR_USED")
    assert runs(bff, "mfa") == 2

    key = new_key()
    first = run(fd, "ok", key, value="v")
    assert first.status_code == 200 and first.json()["key"] == key
    replay = run(fd, "ok", key, value="v")
    assert replay.content == first.content and replay.headers[REPLAYED] == "true"
    assert replay.headers["location"] == "/_test/runs/ok"  # the handler's headers replay too
    assert runs(bff, "ok") == 1


def test_missing_and_malformed_keys_are_refused_before_anything_runs(
    fd: Desktop, bff: ServiceProcess, database_url: str
) -> None:
    def post(*keys: bytes) -> httpx.Response:
        auth = [(k.encode(), v.encode()) for k, v in fd.headers("POST", f"{RUN}/bad").items()]
        sent = auth + [(b"Idempotency-Key", key) for key in keys]
        return fd.http.post(f"{RUN}/bad", json={}, headers=sent)

    error(run(fd, "bad", None), 400, "IDEMPOTENCY_KEY_REQUIRED")
    for bad in ("k" * 129, "caf\u00e9", ""):
        refused = post(bad.encode("latin-1"))
        assert "Idempotency-Key" in error(refused, 400, "VALIDATION_FAILED")["message"]
    twice = post(b"a", b"b")
    assert "more than once" in error(twice, 400, "VALIDATION_FAILED")["message"]
    assert runs(bff, "bad") == 0 and key_rows(database_url) == []
    assert run(fd, "bad", "k" * 128).status_code == 200  # the longest key there is


# --- concurrency --------------------------------------------------------------------------------


def test_a_request_while_the_first_runs_is_409_then_replayed(
    fd: Desktop, bff: ServiceProcess
) -> None:
    key = new_key()
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(run, fd, "held", key, value="v", hold=True)
        wait_until(lambda: runs(bff, "held") == 1, 10, "the first run to start")
        busy = run(fd, "held", key, value="v", hold=True)
        assert error(busy, 409, "IDEMPOTENCY_IN_FLIGHT")["retryable"] is True
        assert busy.headers["retry-after"] == "1"
        other = run(fd, "held", key, value="another", hold=True)
        error(other, 422, "IDEMPOTENCY_KEY_REUSED")  # even while the first runs
        open_gate(bff, "held")
        first = held.result(timeout=15)
    assert first.status_code == 200 and first.json()["run"] == 1
    replay = run(fd, "held", key, value="v", hold=True)
    assert replay.content == first.content and replay.headers[REPLAYED] == "true"
    assert runs(bff, "held") == 1


def test_duplicates_sent_at_once_run_once(fd: Desktop, bff: ServiceProcess) -> None:
    key = new_key()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: run(fd, "burst", key, value="v"), range(8)))
    assert runs(bff, "burst") == 1
    assert {a.status_code for a in answers} <= {200, 409}
    assert len({a.content for a in answers if a.status_code == 200}) == 1


# --- scope --------------------------------------------------------------------------------------


def test_keys_are_scoped_to_the_device_and_bound_to_the_operator(
    fd: Desktop, bff: ServiceProcess, sim: SimHandle
) -> None:
    key = new_key()
    mine = run(fd, "scope", key, value="v")
    other_desk = Desktop(bff.url, sim.url, "fd.demo")  # another device, same operator
    try:
        theirs = run(other_desk, "scope", key, value="v")
        assert theirs.status_code == 200 and REPLAYED not in theirs.headers
        assert (mine.json()["run"], theirs.json()["run"]) == (1, 2)
        assert run(other_desk, "scope", key, value="v").json()["run"] == 2  # its own replay
    finally:
        other_desk.close()
    gm = Desktop(bff.url, sim.url, "gm.demo", device=fd.device)  # another operator, same desk
    try:
        error(run(gm, "scope", key, value="v"), 422, "IDEMPOTENCY_KEY_REUSED")
    finally:
        gm.close()
    assert runs(bff, "scope") == 2


# --- outages and crashes ------------------------------------------------------------------------


def test_postgres_down_refuses_keyed_mutations_and_never_calls_upstream(
    start_bff: ServiceFactory, sim: SimHandle
) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    bff = start_bff(SIM_URL=sim.url, BFF_DATABASE_URL=closed)
    desk = Desktop(bff.url, sim.url, "fd.demo")
    try:
        decided = desk.post(
            f"{BASE}/ai/suggestions/sug-any/decide",
            json={"propertyId": P, "decision": "accept"},
            headers={"Idempotency-Key": new_key()},
        )
        assert error(decided, 503, "SERVICE_UNAVAILABLE")["retryable"] is True
        assert calls(sim, "ai", "POST", "/decide") == []  # never un-deduplicated (F-20)
        error(run(desk, "down", new_key()), 503, "SERVICE_UNAVAILABLE")
        assert runs(bff, "down") == 0
        assert metric(bff, 'bff_idempotency_store_failures_total{operation="claim"}') == 2
    finally:
        desk.close()


def test_a_crashed_holders_key_runs_again_on_the_other_instance_once_its_lease_is_over(
    start_stack: StackFactory,
) -> None:
    stack = start_stack(2, BFF_IDEMPOTENCY_LEASE_S="1")  # ./ops/stack up --instances 2
    first, second = stack.processes
    desk = Desktop(first.url, stack.sim, "fd.demo", public_url=stack.lb)
    key = new_key()
    with ThreadPoolExecutor(1) as pool:
        doomed = pool.submit(run, desk, "crash", key, value="v", hold=True)
        wait_until(lambda: runs(first, "crash") == 1, 10, "the run to start")
        first.signal(signal.SIGKILL)  # between claiming the key and storing an answer
        wait_until(first.exited, 10, "the killed instance to exit")
        with pytest.raises(httpx.TransportError):
            doomed.result(timeout=15)
    desk.close()
    # The desktop's retry, as the balancer sends it now: to the instance still alive.
    again = Desktop(second.url, stack.sim, device=desk.device, sign_in=False, public_url=stack.lb)
    open_gate(second, "crash")  # the retry is the same request (held), and goes straight on
    try:
        answers: list[httpx.Response] = []

        def ran() -> bool:
            answers.append(run(again, "crash", key, value="v", hold=True))
            return answers[-1].status_code != 409  # in flight until the lease is over

        wait_until(ran, 20, "the lease to run out", interval=0.25)
        assert answers[-1].status_code == 200, answers[-1].text
        assert REPLAYED not in answers[-1].headers and runs(second, "crash") == 1
        assert metric(second, 'bff_idempotency_outcomes_total{outcome="taken_over"}') == 1
        assert run(again, "crash", key, value="v", hold=True).headers[REPLAYED] == "true"
    finally:
        again.close()


def test_expired_keys_are_cleaned_up_and_then_forgotten(
    start_bff: ServiceFactory, sim: SimHandle, database_url: str
) -> None:
    bff = start_bff(SIM_URL=sim.url, BFF_IDEMPOTENCY_TTL_S="0.5", BFF_IDEMPOTENCY_CLEANUP_S="0.2")
    desk = Desktop(bff.url, sim.url, "fd.demo")
    try:
        key = new_key()
        assert run(desk, "expiry", key, value="v").json()["run"] == 1
        wait_until(lambda: key_rows(database_url) == [], 15, "the cleanup")
        assert metric(bff, "bff_idempotency_pruned_rows_total") >= 1
        later = run(desk, "expiry", key, value="v")  # forgotten: a new request
        assert later.json()["run"] == 2 and REPLAYED not in later.headers
    finally:
        desk.close()
