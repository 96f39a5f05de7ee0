"""Google Pub/Sub adapters, bridged into Trio.

The google-cloud-pubsub client is thread-based. Publishing: ``publish()`` returns a concurrent
future per message; each future's done-callback hops into Trio with
``TrioToken.run_sync_soon`` (thread-safe, also when the callback runs inline), and the caller
waits on a Trio event under a deadline. Ordering keys are enabled; after a failed publish the
client pauses the key, so every key of a failed batch is resumed before the error is raised
(the relay then re-sends the batch in order).

Receiving: one subscription per topic **per instance** (``bff-backoffice.<instance>.<topic>``;
broadcast: every instance sees every event), created at start with message ordering and an
``expiration_policy`` TTL (Pub/Sub deletes it if the instance vanishes), and deleted on clean
shutdown. Each streaming pull's callback (a client pool thread) pushes the message into a
bounded Trio memory channel with ``trio.from_thread.run``: while the channel is full the
callback blocks, which holds the client's flow control — end-to-end backpressure. Ack / nack
happen on the Trio side, after the handler returned. On shutdown the channel is closed first
(blocked callbacks nack), then the streaming pulls are cancelled and joined.

Dead letters are published to ``DEAD_LETTER_TOPIC`` and kept 7 days by the one shared
subscription ``DEAD_LETTER_SUBSCRIPTION``, created here before anything can be parked
(``edge/bus/pubsub_dead_letters.py`` reads and replays them: ``./ops/bus dead-letters``).

With an emulator host, clients talk plaintext gRPC to it (no credentials), and topics are
created when missing (local mode); in production topics are provisioned by Terraform.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import trio
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.api_core.timeout import ConstantTimeout
from google.cloud import pubsub_v1
from google.cloud.pubsub_v1.subscriber.scheduler import ThreadScheduler

from edge.bus.codec import attributes_of
from edge.bus.port import CONSUMED_TOPICS, BusMessage, BusUnavailable, Delivery, topic_for

log = logging.getLogger("bff.bus.pubsub")

DEAD_LETTER_TOPIC = "melmastoon.bff.backoffice.deadletter"
# The one subscription every instance's dead letters are read through (ops/bus, F-38): shared,
# never expiring, keeping unacknowledged messages 7 days (Pub/Sub's maximum).
DEAD_LETTER_SUBSCRIPTION = "bff-backoffice.deadletter"
DEAD_LETTER_RETENTION_S = 7 * 24 * 3600
_BAD_NAME = re.compile(r"[^A-Za-z0-9._~+%-]")


LEASE_EXTENSION_S = 10


def _grpc_channel(host: str) -> Any:
    """A plaintext channel to the emulator; reconnects quickly after an emulator restart
    (gRPC's default reconnect backoff grows to minutes)."""
    import grpc  # type: ignore[import-untyped]

    options = [
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    return grpc.insecure_channel(host, options=options)


def make_publisher_client(
    emulator_host: str, timeout: float, ordering: bool = True, endpoint: str = ""
) -> Any:
    """A publisher client with bounded retries (so a dead broker fails a publish in time),
    talking to the emulator at ``emulator_host``, else to ``endpoint`` (a locational endpoint),
    else to the global one."""
    options = pubsub_v1.types.PublisherOptions(
        enable_message_ordering=ordering,
        retry=Retry(initial=0.1, maximum=min(2.0, timeout), multiplier=2.0, timeout=timeout),
        timeout=ConstantTimeout(timeout),  # type: ignore[no-untyped-call]
    )
    batch = pubsub_v1.types.BatchSettings(max_messages=500, max_latency=0.002)
    kwargs: dict[str, Any] = {}
    if emulator_host:
        from google.pubsub_v1.services.publisher.transports.grpc import PublisherGrpcTransport

        kwargs["transport"] = PublisherGrpcTransport(channel=_grpc_channel(emulator_host))
    elif endpoint:
        kwargs["client_options"] = {"api_endpoint": endpoint}
    return pubsub_v1.PublisherClient(batch_settings=batch, publisher_options=options, **kwargs)


def make_subscriber_client(emulator_host: str) -> Any:
    kwargs: dict[str, Any] = {}
    if emulator_host:
        from google.pubsub_v1.services.subscriber.transports.grpc import SubscriberGrpcTransport

        kwargs["transport"] = SubscriberGrpcTransport(channel=_grpc_channel(emulator_host))
    return pubsub_v1.SubscriberClient(**kwargs)


def subscription_id(instance: str, topic: str) -> str:
    return _BAD_NAME.sub("-", f"bff-backoffice.{instance}.{topic}")[:255]


class _AllDone:
    """Counts concurrent-future completions from any thread into one Trio event."""

    def __init__(self, expected: int, token: trio.lowlevel.TrioToken) -> None:
        self.event = trio.Event()
        self._left = expected
        self._token = token
        self._lock = threading.Lock()

    def callback(self, _future: Any) -> None:
        with self._lock:
            self._left -= 1
            last = self._left == 0
        if last:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self.event.set)


class PubSubPublisher:
    """``Publisher`` over Google Pub/Sub (or its emulator)."""

    def __init__(
        self,
        project: str,
        *,
        emulator_host: str = "",
        endpoint: str = "",
        timeout: float = 10.0,
        create_topics: bool = False,
    ) -> None:
        self._project = project
        self._emulator = emulator_host
        self._endpoint = endpoint
        self._timeout = timeout
        self._create_topics = create_topics
        self._client: Any = None
        self._known_topics: set[str] = set()

    async def open(self) -> None:
        self._client = await trio.to_thread.run_sync(
            make_publisher_client, self._emulator, self._timeout, True, self._endpoint
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                await trio.to_thread.run_sync(client.stop, abandon_on_cancel=True)

    async def publish(self, messages: Sequence[BusMessage]) -> None:
        await self.publish_to(
            [(topic_for(m.subject), m.data, m.ordering_key, attributes_of(m)) for m in messages]
        )

    async def publish_to(self, items: Sequence[tuple[str, bytes, str, dict[str, str]]]) -> None:
        """Publish ``(topic, data, ordering key, attributes)`` items in order, all or error."""
        if not items:
            return
        if self._client is None:
            raise BusUnavailable("pubsub publisher is not open")
        client = self._client
        if self._create_topics:
            for topic in {item[0] for item in items} - self._known_topics:
                await self.ensure_topic(topic)
        done = _AllDone(len(items), trio.lowlevel.current_trio_token())
        sent: list[Any] = []
        keys = {(client.topic_path(self._project, t), k) for t, _, k, _ in items if k}
        try:
            for topic, data, key, attributes in items:
                path = client.topic_path(self._project, topic)
                future = client.publish(path, data, ordering_key=key, **_safe(attributes))
                sent.append(future)
                future.add_done_callback(done.callback)
        except Exception as exc:  # paused key, stopped client, bad argument
            _resume(client, keys)
            raise BusUnavailable(f"pubsub publish refused: {type(exc).__name__}: {exc}") from exc
        with trio.move_on_after(self._timeout):
            await done.event.wait()
        errors = [f.exception() for f in sent if f.done() and f.exception() is not None]
        if errors or not done.event.is_set():
            _resume(client, keys)
            if any(isinstance(e, gexc.NotFound) for e in errors):
                self._known_topics.clear()  # e.g. the emulator restarted: recreate next time
            first = repr(errors[0]) if errors else f"no ack within {self._timeout}s"
            raise BusUnavailable(f"pubsub publish failed: {first[:300]}")

    async def ensure_topic(self, topic: str) -> None:
        """Create ``topic`` if missing (local / emulator mode)."""
        path = self._client.topic_path(self._project, topic)
        await _admin(self._client.create_topic, self._timeout, name=path)
        self._known_topics.add(topic)


_CLIENT_KWARGS = frozenset({"topic", "data", "ordering_key", "retry", "timeout"})


def _safe(attributes: dict[str, str]) -> dict[str, str]:
    """Attributes travel as ``publish(**kwargs)``: rename the few that clash with its parameters."""
    return {(f"attr.{k}" if k in _CLIENT_KWARGS else k): v for k, v in attributes.items()}


def _resume(client: Any, keys: set[tuple[str, str]]) -> None:
    """Un-pause ordering keys after a failure, so the re-sent batch is accepted."""
    for path, key in keys:
        with contextlib.suppress(Exception):  # nothing was paused for this key
            client.resume_publish(path, key)


async def _admin(call: Callable[..., Any], timeout: float, **kwargs: Any) -> None:
    """One blocking admin RPC in a thread; "already exists" / "not found" count as done."""

    def run() -> None:
        with contextlib.suppress(gexc.AlreadyExists, gexc.NotFound):
            call(timeout=timeout, **kwargs)

    try:
        with trio.fail_after(timeout + 1):
            await trio.to_thread.run_sync(run, abandon_on_cancel=True)
    except (trio.TooSlowError, gexc.GoogleAPIError) as exc:
        raise BusUnavailable(f"pubsub admin call failed: {type(exc).__name__}: {exc}") from exc


class PubSubSource:
    """``BusSource`` over Pub/Sub streaming pull: one subscription per topic per instance."""

    def __init__(
        self,
        project: str,
        instance: str,
        topics: Sequence[str] = CONSUMED_TOPICS,
        *,
        emulator_host: str = "",
        create_topics: bool = False,
        ttl_s: int = 86_400,
        ack_deadline_s: int = 60,
        max_messages: int = 100,
        timeout: float = 10.0,
    ) -> None:
        self._project = project
        self._instance = instance
        self._topics = tuple(topics)
        self._emulator = emulator_host
        self._create_topics = create_topics
        self._ttl = ttl_s
        self._ack_deadline = ack_deadline_s
        self._max_messages = max_messages
        self._timeout = timeout
        self._attempts: dict[str, int] = {}
        self._dead_publisher: PubSubPublisher | None = None

    def subscription_path(self, topic: str) -> str:
        return f"projects/{self._project}/subscriptions/{subscription_id(self._instance, topic)}"

    async def run(
        self,
        deliveries: trio.MemorySendChannel[Delivery],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        client = await trio.to_thread.run_sync(make_subscriber_client, self._emulator)
        futures: list[Any] = []
        try:
            await self._ensure_subscriptions(client)
            token = trio.lowlevel.current_trio_token()
            stopped = _AllDone(1, token)
            for topic in self._topics:
                future = client.subscribe(
                    self.subscription_path(topic),
                    callback=self._callback(topic, deliveries, token),
                    flow_control=pubsub_v1.types.FlowControl(
                        max_messages=self._max_messages,
                        # The stream's ack deadline follows this (the library's default is
                        # 60 s): a message sent down a stream that died with its connection is
                        # redelivered after it, so this bounds how long an interrupted link
                        # holds events back (F-22). Leases still extend while a handler runs.
                        max_duration_per_lease_extension=LEASE_EXTENSION_S,
                    ),
                    scheduler=ThreadScheduler(ThreadPoolExecutor(max_workers=2)),
                )
                future.add_done_callback(stopped.callback)
                futures.append(future)
            task_status.started()
            await stopped.event.wait()
            failure = next((f.exception() for f in futures if f.done()), None)
            raise BusUnavailable(f"pubsub streaming pull stopped: {failure!r}"[:400])
        finally:
            deliveries.close()  # callbacks blocked on a full channel now nack and return
            with trio.CancelScope(shield=True), trio.move_on_after(self._timeout):
                await trio.to_thread.run_sync(_stop_pulls, futures, client, abandon_on_cancel=True)

    def _callback(
        self,
        topic: str,
        deliveries: trio.MemorySendChannel[Delivery],
        token: trio.lowlevel.TrioToken,
    ) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:  # runs in a client pool thread
            attempt = self._attempts.get(message.message_id, 0) + 1
            self._attempts[message.message_id] = attempt
            delivery = Delivery(
                topic=topic,
                data=bytes(message.data),
                attributes=dict(message.attributes),
                message_id=message.message_id,
                attempt=attempt,
                ack=self._settle(message, ack=True),
                nack=self._settle(message, ack=False),
            )
            try:
                trio.from_thread.run(deliveries.send, delivery, trio_token=token)
            except (
                trio.RunFinishedError,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
                trio.Cancelled,
            ):
                message.nack()

        return on_message

    def _settle(self, message: Any, *, ack: bool) -> Callable[[], Any]:
        async def settle() -> None:
            if ack:
                self._attempts.pop(message.message_id, None)
                message.ack()
            else:
                message.nack()

        return settle

    async def _ensure_subscriptions(self, client: Any) -> None:
        publisher = None
        try:
            if self._create_topics:
                publisher = await trio.to_thread.run_sync(
                    make_publisher_client, self._emulator, self._timeout, False
                )
            for topic in self._topics:
                topic_path = f"projects/{self._project}/topics/{topic}"
                if publisher is not None:
                    await _admin(publisher.create_topic, self._timeout, name=topic_path)
                await _admin(
                    client.create_subscription,
                    self._timeout,
                    request={
                        "name": self.subscription_path(topic),
                        "topic": topic_path,
                        "enable_message_ordering": True,
                        "ack_deadline_seconds": self._ack_deadline,
                        "expiration_policy": {"ttl": {"seconds": self._ttl}},
                    },
                )
            await ensure_dead_letter_subscription(client, publisher, self._project, self._timeout)
        finally:
            if publisher is not None:
                await trio.to_thread.run_sync(publisher.stop, abandon_on_cancel=True)

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        if self._dead_publisher is None:
            publisher = PubSubPublisher(
                self._project,
                emulator_host=self._emulator,
                timeout=self._timeout,
                create_topics=self._create_topics,
            )
            await publisher.open()
            self._dead_publisher = publisher
        attributes = {
            **delivery.attributes,
            "sourceTopic": delivery.topic,
            "messageId": delivery.message_id,
            "reason": reason[:500],
            "instance": self._instance,
            "attempt": str(delivery.attempt),
        }
        await self._dead_publisher.publish_to([(DEAD_LETTER_TOPIC, delivery.data, "", attributes)])

    async def retire(self) -> None:
        if self._dead_publisher is not None:
            await self._dead_publisher.close()
            self._dead_publisher = None
        client = await trio.to_thread.run_sync(make_subscriber_client, self._emulator)
        try:
            for topic in self._topics:
                await _admin(
                    client.delete_subscription,
                    self._timeout,
                    subscription=self.subscription_path(topic),
                )
        finally:
            await trio.to_thread.run_sync(client.close, abandon_on_cancel=True)


async def ensure_dead_letter_subscription(
    subscriber: Any, publisher: Any | None, project: str, timeout: float
) -> str:
    """Create the dead-letter topic (when ``publisher`` is given: local mode) and its shared
    subscription if missing, before anything can be parked (a topic without a subscription
    drops what is published to it); return the subscription's path."""
    topic_path = f"projects/{project}/topics/{DEAD_LETTER_TOPIC}"
    path = f"projects/{project}/subscriptions/{DEAD_LETTER_SUBSCRIPTION}"
    if publisher is not None:
        await _admin(publisher.create_topic, timeout, name=topic_path)
    await _admin(
        subscriber.create_subscription,
        timeout,
        request={
            "name": path,
            "topic": topic_path,
            "ack_deadline_seconds": 60,
            "message_retention_duration": {"seconds": DEAD_LETTER_RETENTION_S},
            "expiration_policy": {},  # set without a ttl: never expires
        },
    )
    return path


def _stop_pulls(futures: list[Any], client: Any) -> None:
    for future in futures:
        future.cancel()
    for future in futures:
        with contextlib.suppress(Exception):  # cancelled or already failed: stopping anyway
            future.result(timeout=5)
    client.close()
