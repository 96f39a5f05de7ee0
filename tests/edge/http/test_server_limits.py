"""What the server layer refuses below the app (issue #10, finding 10), and the listen backlog.

* A request head (line + headers) over 16 KiB is refused at once with 431 ``HEADERS_TOO_LARGE``,
  the envelope, an ``X-Request-Id``, and the connection closed — whether hypercorn's parser
  gave up on it (still incomplete past 16 KiB) or it arrived whole in one read (up to 64 KiB,
  which the parser lets through: edge/asgi.py ``HeadLimit``).
* A head the parser cannot read (a raw ``\\xff`` in the path, a broken header line) is 400
  ``VALIDATION_FAILED`` with the envelope and an ``X-Request-Id`` (edge/parser_errors.py).
* The listen backlog holds a reconnect burst: no connect waits for a SYN retransmit.
* ``SCHEMA_DRIFT`` is not retryable.
"""

from __future__ import annotations

import json
import selectors
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from edge.errors import Code
from tests.support.desktop import Desktop
from tests.support.fixtures import ServiceFactory
from tests.support.procs import ServiceProcess
from tests.support.sim import SimHandle

CAP = 16 * 1024
QUICK_S = 2.0  # a refusal is immediate; this only rules out waiting for a timeout


@pytest.fixture
def bff(start_bff: ServiceFactory) -> ServiceProcess:
    return start_bff()


class Answer:
    def __init__(self, raw: bytes, elapsed: float, closed: bool) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])
        }
        self.elapsed = elapsed
        self.closed = closed

    def error(self) -> dict[str, Any]:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        envelope: dict[str, Any] = json.loads(self.body)
        assert set(envelope) == {"error"}
        error: dict[str, Any] = envelope["error"]
        assert set(error) == {"code", "message", "requestId", "retryable"}
        assert error["requestId"] == self.headers["x-request-id"]
        return error


def exchange(bff: ServiceProcess, *parts: bytes) -> Answer:
    """Send ``parts`` (each in one write) and read until the server closes or 5 s pass."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", bff.port), timeout=5) as sock:
        for part in parts:
            sock.sendall(part)
        raw, closed = b"", False
        deadline = started + 5
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                closed = True
                break
            raw += chunk
    return Answer(raw, time.monotonic() - started, closed)


def headers_of(size: int) -> bytes:
    """``size`` bytes of header lines (each a little under 1 KiB)."""
    lines, total, i = [], 0, 0
    while total < size:
        line = f"X-Filler-{i}: {'a' * 1000}\r\n".encode()
        lines.append(line)
        total += len(line)
        i += 1
    return b"".join(lines)


def test_an_oversized_head_is_431_with_the_envelope_and_closed(bff: ServiceProcess) -> None:
    cases = {
        # whole in one read: hypercorn's parser lets it through, HeadLimit refuses it
        "40 KiB of headers": [
            b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Request-Id: big-1\r\n"
            + headers_of(40 * 1024)
            + b"\r\n"
        ],
        "10,000 query parameters": [
            b"GET /health/live?"
            + b"&".join(b"p=%d" % i for i in range(10_000))
            + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        ],
        # still incomplete past 16 KiB: the parser refuses it (edge/parser_errors.py)
        "17 KiB of headers, unfinished": [
            b"GET /health/live HTTP/1.1\r\nHost: x\r\n" + headers_of(17 * 1024)
        ],
    }
    for name, parts in cases.items():
        answer = exchange(bff, *parts)
        assert answer.status == 431, (name, answer.status, answer.body)
        error = answer.error()
        assert error["code"] == Code.HEADERS_TOO_LARGE.wire and error["retryable"] is False, name
        assert answer.closed and answer.elapsed < QUICK_S, (name, answer.closed, answer.elapsed)
    echoed = exchange(bff, *cases["40 KiB of headers"])
    assert echoed.headers["x-request-id"] == "big-1"  # refused by the app stack: the id kept
    under = exchange(  # the cap leaves room for real heads
        bff,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + headers_of(CAP - 2048)
        + b"\r\n",
    )
    assert under.status == 200, under.body


@pytest.mark.parametrize(
    "head",
    [
        b"GET /health/\xfflive HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
    ids=["raw-ff-in-path", "space-in-header-name", "unsupported-transfer-encoding"],
)
def test_a_head_the_parser_cannot_read_is_400_with_the_envelope(
    bff: ServiceProcess, head: bytes
) -> None:
    answer = exchange(bff, head)
    assert answer.status == 400, answer.body
    error = answer.error()
    assert error["code"] == Code.VALIDATION_FAILED.wire and error["retryable"] is False
    assert answer.closed and answer.elapsed < QUICK_S


def _listen_backlog(port: int) -> int:
    out = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True
    ).stdout.split()
    return int(out[2])  # State Recv-Q Send-Q(= the backlog of a listening socket) ...


@pytest.fixture
def burst() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    yield sockets
    for sock in sockets:
        sock.close()


def test_the_listen_backlog_absorbs_a_reconnect_burst(
    bff: ServiceProcess, burst: list[socket.socket]
) -> None:
    assert _listen_backlog(bff.port) >= 2500  # the capacity model's SSE reconnect wave
    # 400 connects at once: past the backlog one would wait ≥ 1 s for its SYN to be resent.
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    for _ in range(400):
        sock = socket.socket()
        sock.setblocking(False)
        burst.append(sock)
        sock.connect_ex(("127.0.0.1", bff.port))
        selector.register(sock, selectors.EVENT_WRITE)
    pending, slowest = len(burst), 0.0
    while pending and time.monotonic() - started < 5:
        for key, _ in selector.select(timeout=0.1):
            connected = key.fileobj
            assert isinstance(connected, socket.socket)
            assert connected.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
            selector.unregister(connected)
            pending -= 1
            slowest = time.monotonic() - started
    selector.close()
    assert pending == 0 and slowest < 0.9, (pending, slowest)


def test_schema_drift_is_not_retryable(start_bff: ServiceFactory, sim: SimHandle) -> None:
    bff = start_bff(SIM_URL=sim.url)
    desk = Desktop(bff.url, sim.url, "fd.demo")
    try:
        sim.fault("reservation", "drift")
        response = desk.get("/bff/backoffice/v1/in-house", params={"propertyId": "prop-demo-1"})
        assert response.status_code == 502, response.text
        error = response.json()["error"]
        assert error["code"] == "SCHEMA_DRIFT"
        assert error["retryable"] is False  # the same request drifts again
    finally:
        desk.close()
