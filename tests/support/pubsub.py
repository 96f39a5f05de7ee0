"""The Google Pub/Sub emulator for tests, and the bus a process test runs on.

* ``pubsub_emulator``: one emulator per test session (found with the stack's own finder,
  :func:`ops.localstack.deps.pubsub_emulator_jar`), shared by the adapter tests and the process
  tests; each process test uses its own Pub/Sub project, so nothing leaks between tests.
* ``emulator_java``: the ``java -jar <emulator>`` command, for tests that start (and stop) an
  emulator of their own.
* ``bus``: parametrized ``embedded`` / ``pubsub``: the environment that puts a BFF process and
  the simulator on that bus, and a check that an instance's subscription exists.

Without java or the emulator the Pub/Sub tests are skipped on a workstation but FAIL in CI
(``CI`` set, as every CI system does): CI must not go green by silently not testing Pub/Sub.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from edge.bus.pubsub import make_subscriber_client, subscription_id
from edge.bus.redis_streams import stream_key
from ops.localstack.deps import pubsub_emulator_jar
from tests.support.fixtures import REDIS_URL
from tests.support.procs import Proc, free_port, port_open, wait_until


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def emulator_java_argv() -> list[str] | None:
    """``[java, -jar, <newest emulator jar>]``, or None when java or the emulator is missing."""
    jar, java = pubsub_emulator_jar(), shutil.which("java")
    return [java, "-jar", str(jar)] if jar is not None and java else None


def require_emulator() -> list[str]:
    """The emulator command, else skip the test (fail it in CI)."""
    argv = emulator_java_argv()
    if argv is not None:
        return argv
    missing = "java" if shutil.which("java") is None else "the Pub/Sub emulator jar"
    reason = (
        f"{missing} not found (gcloud components install pubsub-emulator, or apt-get install"
        " google-cloud-cli-pubsub-emulator default-jre-headless)"
    )
    if in_ci():
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


class PubSubEmulator(Proc):
    """The Pub/Sub emulator on a free port; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, java_argv: list[str], log_dir: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._argv = java_argv
        self._dir = log_dir
        self.start()

    def start(self) -> None:
        argv = [*self._argv, "--host=127.0.0.1", f"--port={self.port}"]
        super().__init__(f"pubsub-{self.port}", argv, {}, self._dir)
        try:
            wait_until(self._up, 60, "the pubsub emulator")
        except AssertionError:
            self.stop()
            raise AssertionError(f"the emulator did not start:\n{self.output()[-3000:]}") from None

    def _up(self) -> bool:
        if self.popen.poll() is not None:
            raise AssertionError(f"the emulator exited:\n{self.output()[-3000:]}")
        return port_open(self.port)


@pytest.fixture(scope="session")
def emulator_java() -> list[str]:
    return require_emulator()


@pytest.fixture(scope="session")
def pubsub_emulator(
    emulator_java: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PubSubEmulator]:
    """One emulator for the whole test session."""
    emulator = PubSubEmulator(emulator_java, tmp_path_factory.mktemp("pubsub"))
    yield emulator
    emulator.stop()


@dataclass
class Bus:
    """The bus of a process test: ``env`` puts a BFF (and the simulator) on it."""

    kind: str  # "embedded" | "pubsub"
    prefix: str  # this test's Redis prefix (the embedded bus's streams live under it)
    emulator: PubSubEmulator | None = None
    project: str = ""
    env: dict[str, str] = field(default_factory=dict)

    def subscribed(self, instance: str, topic: str) -> bool:
        """Whether ``instance``'s subscription to ``topic`` exists (events published from now on
        reach it)."""
        if self.emulator is None:
            client = redis.Redis.from_url(REDIS_URL)
            try:
                groups = client.xinfo_groups(stream_key(self.prefix, topic))
            except redis.ResponseError:
                return False
            finally:
                client.close()
            return f"bff:{instance}" in {g["name"].decode() for g in groups}
        path = f"projects/{self.project}/subscriptions/{subscription_id(instance, topic)}"
        subscriber = make_subscriber_client(self.emulator.host)
        try:
            subscriber.get_subscription(subscription=path, timeout=5)
            return True
        except Exception:
            return False
        finally:
            subscriber.close()

    def assert_serves(self, bff: Proc) -> None:
        """``bff`` (a BFF process) runs on this bus: its start-up line names it."""
        serving = [line for line in bff.output().splitlines() if '"msg":"serving"' in line]
        assert serving and f'"bus":"{self.kind}"' in serving[0], serving or bff.output()[-2000:]

    def wait_subscribed(self, instance: str, topic: str, timeout: float = 30) -> None:
        wait_until(
            lambda: self.subscribed(instance, topic),
            timeout,
            f"{instance}'s {self.kind} subscription to {topic}",
            interval=0.1,
        )


@pytest.fixture(params=["embedded", "pubsub"])
def bus(request: pytest.FixtureRequest, redis_prefix: str) -> Bus:
    """The test runs once on the embedded bus (Redis Streams) and once on the Pub/Sub emulator
    (own project per test). The emulator is started only when a pubsub case runs."""
    if request.param == "embedded":
        return Bus(
            "embedded", redis_prefix, env={"BFF_BUS": "embedded", "PUBSUB_EMULATOR_HOST": ""}
        )
    emulator: PubSubEmulator = request.getfixturevalue("pubsub_emulator")
    project = f"bfft-{redis_prefix}"
    env = {
        "BFF_BUS": "pubsub",
        "PUBSUB_EMULATOR_HOST": emulator.host,
        "BFF_PUBSUB_PROJECT": project,
    }
    return Bus("pubsub", redis_prefix, emulator, project, env)
