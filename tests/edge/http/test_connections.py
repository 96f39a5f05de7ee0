"""The server closes connections it should (the quart-trio bug worked around in edge/asgi.py)."""

import socket
import time

from tests.support.fixtures import ServiceFactory


def _request(sock: socket.socket, extra: str = "") -> bytes:
    sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"}"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    """True when the server closes the connection (recv returns b'') before ``deadline`` seconds."""
    sock.settimeout(deadline)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False


def test_connection_close_is_honoured(start_bff: ServiceFactory) -> None:
    bff = start_bff()
    with socket.create_connection(("127.0.0.1", bff.port), timeout=5) as sock:
        assert b"200" in _request(sock, "Connection: close\r\n").split(b"\r\n", 1)[0]
        assert _closed_by_server(sock, 2.0)


def test_idle_keepalive_connection_is_closed_after_timeout(start_bff: ServiceFactory) -> None:
    bff = start_bff(BFF_KEEPALIVE_TIMEOUT_S="1")
    with socket.create_connection(("127.0.0.1", bff.port), timeout=5) as sock:
        assert b"200" in _request(sock).split(b"\r\n", 1)[0]
        started = time.monotonic()
        assert _closed_by_server(sock, 5.0)
        assert time.monotonic() - started >= 0.5  # closed by the idle timer, not at once


def test_keepalive_connection_is_reused(start_bff: ServiceFactory) -> None:
    bff = start_bff()
    with socket.create_connection(("127.0.0.1", bff.port), timeout=5) as sock:
        for _ in range(3):
            assert b"200" in _request(sock).split(b"\r\n", 1)[0]
