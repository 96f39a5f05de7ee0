"""A request body has a deadline: in total (``BFF_BODY_TIMEOUT_S``) and between two chunks
(``BFF_BODY_IDLE_S``). A late body is answered 408 ``REQUEST_TIMEOUT`` with the envelope and
the connection is closed, authenticated or not, so slow clients cannot pile up connections."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import NamedTuple

import pytest
import trio

from tests.support.desktop import APP_VERSION, Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle
from tests.support.waiting import eventually

TOTAL_S = 2.0
IDLE_S = 0.5
TRICKLE_S = 0.2  # a byte this often: never silent for IDLE_S, never done within TOTAL_S
SLACK_S = 1.5  # scheduling, the 408's way back, the close
DECLARED = 100_000  # Content-Length; the body never gets there
BASE = "/bff/backoffice/v1"


@pytest.fixture
def bff(start_bff: ServiceFactory, sim: SimHandle) -> ServiceProcess:
    return start_bff(SIM_URL=sim.url, BFF_BODY_TIMEOUT_S=str(TOTAL_S), BFF_BODY_IDLE_S=str(IDLE_S))


@pytest.fixture
def desk(bff: ServiceProcess, sim: SimHandle) -> Desktop:
    return Desktop(bff.url, sim.url)


class Target(NamedTuple):
    path: str
    headers: Callable[[Desktop], dict[str, str]]


def _signed(path: str) -> Callable[[Desktop], dict[str, str]]:
    return lambda desk: desk.headers("POST", path)


def _refresh_proof(desk: Desktop) -> dict[str, str]:
    """A valid proof for the refresh URL: the route gets past it and waits for the body."""
    url = desk.bff_url + f"{BASE}/auth/refresh"
    return {"DPoP": desk.device.proof("POST", url), "X-App-Version": APP_VERSION}


def _heartbeat(desk: Desktop) -> str:
    return f"{BASE}/devices/{desk.device_id}/heartbeat"


TARGETS = {
    "echo, no auth": lambda desk: Target("/_test/echo", lambda _: {}),
    "heartbeat, garbage auth": lambda desk: Target(
        _heartbeat(desk), lambda _: {"Authorization": "DPoP garbage", "DPoP": "garbage"}
    ),
    "heartbeat, signed": lambda desk: Target(_heartbeat(desk), _signed(_heartbeat(desk))),
    "sign-out, signed": lambda desk: Target(
        f"{BASE}/auth/sign-out", _signed(f"{BASE}/auth/sign-out")
    ),
    "refresh, valid proof": lambda desk: Target(f"{BASE}/auth/refresh", _refresh_proof),
}


class Outcome(NamedTuple):
    elapsed: float  # from the end of the headers to the server's close
    response: bytes  # everything the server sent before closing


async def _slow_request(
    port: int, target: Target, desk: Desktop, *, trickle: bool, timeout: float
) -> Outcome:
    """Send the headers, then a first body byte, then either a byte every TRICKLE_S or
    nothing; read until the server closes the connection (fail after ``timeout``)."""
    headers = {
        "Host": f"127.0.0.1:{port}",
        "Content-Type": "application/json",
        "Content-Length": str(DECLARED),
        **target.headers(desk),
    }
    head = f"POST {target.path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = bytearray()
    answered = trio.Event()
    async with stream:
        await stream.send_all(head.encode() + b"{")
        started = trio.current_time()

        async def send_slowly() -> None:
            while trickle and not answered.is_set():
                await trio.sleep(TRICKLE_S)
                try:
                    await stream.send_all(b" ")
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return

        with trio.fail_after(timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_slowly)
                while True:
                    try:
                        chunk = await stream.receive_some(65536)
                    except trio.BrokenResourceError:  # reset after the answer: closed too
                        chunk = b""
                    if not chunk:
                        break
                    received += chunk
                    answered.set()
                nursery.cancel_scope.cancel()
        return Outcome(trio.current_time() - started, bytes(received))


def _timeout_envelope(response: bytes) -> dict[str, object]:
    """The 408 with the contract's envelope and a request id (the connection is closed)."""
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split(" ")[1] == "408", response[:300]
    names = {line.split(":", 1)[0].strip().lower(): line for line in lines[1:]}
    assert "x-request-id" in names
    assert names.get("connection", "").lower().endswith("close")
    error: dict[str, object] = json.loads(body)["error"]
    assert set(error) == {"code", "message", "requestId", "retryable"}
    assert error["code"] == "REQUEST_TIMEOUT"
    assert error["retryable"] is True
    return error


async def _each_target(
    bff: ServiceProcess, desk: Desktop, *, trickle: bool, timeout: float
) -> dict[str, Outcome]:
    """One slow request to every target at once."""
    outcomes: dict[str, Outcome] = {}

    async def one(name: str) -> None:
        target = TARGETS[name](desk)
        outcomes[name] = await _slow_request(
            bff.port, target, desk, trickle=trickle, timeout=timeout
        )

    async with trio.open_nursery() as nursery:
        for name in sorted(TARGETS):
            nursery.start_soon(one, name)
    return outcomes


async def test_a_trickled_body_is_408_after_the_total_bound(
    bff: ServiceProcess, desk: Desktop
) -> None:
    """A byte every TRICKLE_S, never the whole body: answered at TOTAL_S, on every kind of
    route (no auth, a signed session, garbage auth, the refresh route past its proof)."""
    outcomes = await _each_target(bff, desk, trickle=True, timeout=TOTAL_S + SLACK_S)
    for name, outcome in outcomes.items():
        error = _timeout_envelope(outcome.response)
        assert "not received within" in str(error["message"]), name  # the total bound


async def test_a_stalled_body_is_408_after_the_idle_bound(
    bff: ServiceProcess, desk: Desktop
) -> None:
    """One byte, then silence: answered at IDLE_S, well before the total bound."""
    outcomes = await _each_target(bff, desk, trickle=False, timeout=TOTAL_S)
    for name, outcome in outcomes.items():
        error = _timeout_envelope(outcome.response)
        assert "stalled" in str(error["message"]), name
        assert outcome.elapsed < TOTAL_S, name


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_slow_clients_hold_no_connection_past_the_bound(
    bff: ServiceProcess, desk: Desktop
) -> None:
    """50 slow clients at once (trickling or silent, signed or not, on routes that read the
    body before anything else): each is answered and closed within the bound, a normal request
    is served meanwhile, and the server's file descriptors come back down (the hostile run saw
    24 → 224 and no close in 45 s)."""
    baseline = _open_fds(bff.popen.pid)
    names = [name for name in sorted(TARGETS) if not name.startswith("refresh")]
    clients = [(TARGETS[names[i % len(names)]](desk), i % 2 == 0) for i in range(50)]
    trickled: list[float] = []  # when each trickling client was answered and closed
    outcomes: list[Outcome] = []

    async def slow(target: Target, trickle: bool) -> None:
        outcome = await _slow_request(
            bff.port, target, desk, trickle=trickle, timeout=TOTAL_S + SLACK_S
        )
        outcomes.append(outcome)
        if trickle:
            trickled.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        for target, trickle in clients:
            nursery.start_soon(slow, target, trickle)
        heartbeat = await trio.to_thread.run_sync(
            lambda: desk.post(_heartbeat(desk), json={"appVersion": APP_VERSION})
        )
        served = trio.current_time()
        assert heartbeat.status_code == 200, heartbeat.text

    assert len(outcomes) == len(clients)
    for outcome in outcomes:
        _timeout_envelope(outcome.response)
    assert min(trickled) > served, "the normal request waited for the slow ones"
    await eventually(lambda: _open_fds(bff.popen.pid) <= baseline + 5, timeout=5)
