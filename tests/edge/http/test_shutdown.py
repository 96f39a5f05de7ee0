"""Graceful shutdown: in-flight requests finish, new connections are refused, exit code 0."""

import signal
import socket
import threading

import httpx

from tests.support.fixtures import ServiceFactory
from tests.support.procs import wait_until


def _in_flight(url: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("bff_http_in_flight "):
            return float(line.split()[1])
    return 0.0


def _refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_sigterm_drains_in_flight_request(start_bff: ServiceFactory) -> None:
    bff = start_bff(BFF_SHUTDOWN_GRACE_S="10")
    results: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: results.append(httpx.get(f"{bff.url}/_test/slow?ms=3000", timeout=20))
    )
    slow.start()
    # The metrics request itself counts as one in flight.
    wait_until(lambda: _in_flight(bff.url) >= 2, 10, "the slow request to be in flight")
    bff.signal(signal.SIGTERM)
    wait_until(lambda: _refused(bff.port), 2.5, "new connections to be refused")
    assert slow.is_alive(), "the slow request must still be running when new ones are refused"
    slow.join(timeout=20)
    assert results and results[0].status_code == 200
    assert results[0].json() == {"slept": True}
    assert bff.wait(timeout=15) == 0
    assert '"msg":"stopped"' in bff.output()


def test_sigint_also_stops_cleanly(start_bff: ServiceFactory) -> None:
    bff = start_bff()
    bff.signal(signal.SIGINT)
    assert bff.wait(timeout=15) == 0
