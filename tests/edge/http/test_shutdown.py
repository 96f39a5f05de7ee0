"""Graceful shutdown: in-flight requests finish, new connections are refused, exit code 0."""

import signal
import socket
import threading

import httpx

from tests.support.fixtures import ServiceFactory
from tests.support.procs import SilentServer, wait_until


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


def test_readiness_says_draining_while_in_flight_requests_finish(
    start_bff: ServiceFactory,
) -> None:
    """On SIGTERM readiness fails at once with ``draining`` (so the load balancer stops sending
    traffic) while the requests in flight finish. A readiness probe that is itself in flight,
    held up by a cache tier that never answers, is one of them: it answers 503 ``draining``."""
    with SilentServer() as silent:
        bff = start_bff(
            BFF_REDIS_CACHE_URL=silent.url("redis"),
            BFF_DEPENDENCY_TIMEOUT_S="1.5",
            BFF_SHUTDOWN_GRACE_S="10",
        )
        before = httpx.get(f"{bff.url}/health/ready", timeout=20)
        assert before.status_code == 200 and before.json()["down"] == []  # cache: not required
        results: dict[str, httpx.Response] = {}

        def call(name: str, path: str) -> threading.Thread:
            thread = threading.Thread(
                target=lambda: results.update({name: httpx.get(bff.url + path, timeout=20)})
            )
            thread.start()
            return thread

        slow = call("slow", "/_test/slow?ms=3000")
        ready = call("ready", "/health/ready")  # waits 1.5 s for the silent cache tier
        # both in flight (the metrics request itself counts as one)
        wait_until(lambda: _in_flight(bff.url) >= 3, 10, "both requests to be in flight")
        bff.signal(signal.SIGTERM)
        ready.join(timeout=20)
        assert slow.is_alive(), "readiness must report draining while requests still run"
        answer = results["ready"]
        assert answer.status_code == 503, answer.text
        body = answer.json()
        assert body["status"] == "not_ready" and body["down"] == ["draining"], body
        assert body["checks"]["postgres"]["ok"] is True  # draining, not a dependency down
        slow.join(timeout=20)
        assert results["slow"].status_code == 200 and results["slow"].json() == {"slept": True}
        assert bff.wait(timeout=15) == 0
