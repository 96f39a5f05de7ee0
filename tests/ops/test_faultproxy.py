"""The dependency fault proxy in front of the real Redis: pass, down, hang, and back to pass."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.faultproxy import FaultProxyProcess

REDIS = ("127.0.0.1", 6379)


@pytest.fixture
def proxy(log_dir: Path) -> Iterator[FaultProxyProcess]:
    process = FaultProxyProcess({"redis-cache": REDIS}, log_dir)
    try:
        yield process
    finally:
        process.stop()


def client_through(proxy: FaultProxyProcess) -> redis.Redis:
    host, port = proxy.address("redis-cache").split(":")
    return redis.Redis(
        host=host,
        port=int(port),
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
    )


def test_a_client_works_fails_fast_when_down_times_out_when_hung_and_works_again(
    proxy: FaultProxyProcess, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:faultproxy"
    client = client_through(proxy)
    try:
        assert client.set(key, b"v1") is True
        assert client.get(key) == b"v1"
        assert proxy.proxies()["redis-cache"]["connections"] == 1

        down = proxy.set_mode("redis-cache", "down")
        assert down["mode"] == "down"
        assert down["connections"] == 0  # the open connection was closed at once
        with pytest.raises(redis.ConnectionError):
            client.get(key)  # the open connection: EOF
        with pytest.raises(redis.ConnectionError):
            client.get(key)  # a new connection: accepted, then closed

        proxy.set_mode("redis-cache", "pass")
        assert client.get(key) == b"v1"

        hang = proxy.set_mode("redis-cache", "hang")
        assert hang["connections"] == 1  # frozen, not closed
        with pytest.raises(redis.TimeoutError):
            client.get(key)  # the open connection: nothing comes back
        fresh = client_through(proxy)
        with pytest.raises(redis.TimeoutError):
            fresh.get(key)  # a new connection: accepted, never forwarded
        fresh.close()

        proxy.set_mode("redis-cache", "pass")
        assert client.get(key) == b"v1"
        assert client.set(key, b"v2") is True
        assert redis.Redis(*REDIS).get(key) == b"v2"  # the real server got it
    finally:
        client.close()
    assert "redis-cache: pass -> down" in proxy.output()
    assert "redis-cache: hang -> pass" in proxy.output()


def _raw(proxy: FaultProxyProcess) -> socket.socket:
    host, port = proxy.address("redis-cache").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.settimeout(0.5)
    return sock


def test_a_healed_hang_delivers_what_it_held_and_down_closes_what_it_held(
    proxy: FaultProxyProcess,
) -> None:
    """hang then pass is a partition that heals: a frozen connection gets its late reply and a
    connection accepted during the hang is forwarded; hang then down closes them."""
    frozen = _raw(proxy)
    frozen.sendall(b"PING\r\n")
    assert frozen.recv(64) == b"+PONG\r\n"
    proxy.set_mode("redis-cache", "hang")
    frozen.sendall(b"PING\r\n")
    held = _raw(proxy)
    held.sendall(b"PING\r\n")
    for sock in (frozen, held):
        with pytest.raises(TimeoutError):
            sock.recv(64)  # nothing moves
    proxy.set_mode("redis-cache", "pass")
    for sock in (frozen, held):
        sock.settimeout(5)
        assert sock.recv(64) == b"+PONG\r\n"  # the held request, answered late

    proxy.set_mode("redis-cache", "hang")
    proxy.set_mode("redis-cache", "down")
    for sock in (frozen, held):
        sock.settimeout(5)
        assert sock.recv(64) == b""  # closed by the proxy
        sock.close()
    proxy.set_mode("redis-cache", "pass")


def test_the_control_endpoint_rejects_unknown_proxies_and_bad_modes(
    proxy: FaultProxyProcess,
) -> None:
    url = proxy.control_url
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    listed = httpx.get(url + "/proxies").json()
    assert listed["redis-cache"]["mode"] == "pass"
    assert listed["redis-cache"]["target"] == "127.0.0.1:6379"
    assert listed["redis-cache"]["listen"] == proxy.address("redis-cache")

    assert httpx.post(url + "/proxies/nope", json={"mode": "down"}).status_code == 404
    assert httpx.post(url + "/proxies/redis-cache", json={"mode": "sideways"}).status_code == 400
    assert httpx.post(url + "/proxies/redis-cache", content=b"not json").status_code == 400
    assert httpx.get(url + "/elsewhere").status_code == 404
    assert httpx.get(url + "/proxies").json()["redis-cache"]["mode"] == "pass"
