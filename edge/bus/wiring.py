"""Starts the ledger writer, retention, the outbox relay and the bus subscriber of one process.

Called from ``edge.system.run_system`` before the actor system (actors append through
``services.ledger``). Each long-lived resource (bus publisher, subscription) is owned by the
task that uses it, so cancellation at shutdown closes it in the right order.
"""

from __future__ import annotations

from datetime import timedelta

import trio

from edge.bus import instance_id, open_publisher, open_source
from edge.bus.port import InboundEvent
from edge.bus.relay import Relay
from edge.bus.subscriber import Subscriber, log_and_drop
from edge.services import Services
from ledger.appendlog import Ledger
from ledger.retention import run_retention


async def start_ledger_and_bus(nursery: trio.Nursery, services: Services) -> None:
    """Start the subsystems in ``nursery`` and publish ``services.ledger`` / ``instance_id``."""
    settings = services.settings
    services.instance_id = services.instance_id or instance_id(settings)
    ledger = Ledger(services.db, metrics=services.metrics, max_batch=settings.ledger_max_batch)
    await nursery.start(ledger.run)
    services.ledger = ledger
    nursery.start_soon(
        lambda: run_retention(
            services.db,
            older_than=timedelta(days=settings.ledger_retention_days),
            interval_s=settings.ledger_retention_interval_s,
            batch=settings.ledger_retention_batch,
            metrics=services.metrics,
        )
    )
    if settings.relay_enabled:
        nursery.start_soon(_run_relay, services, ledger)
    if settings.subscriber_enabled:
        nursery.start_soon(_run_subscriber, services)


async def _run_relay(services: Services, ledger: Ledger) -> None:
    settings = services.settings
    async with open_publisher(settings) as publisher:
        relay = Relay(
            services.db,
            publisher,
            ledger=ledger,
            metrics=services.metrics,
            batch=settings.relay_batch,
            poll_s=settings.relay_poll_s,
            backoff_max_s=settings.relay_backoff_max_s,
            publish_timeout_s=settings.bus_publish_timeout_s * 2,
        )
        await relay.run()


async def _run_subscriber(services: Services) -> None:
    settings = services.settings

    async def dispatch(event: InboundEvent) -> None:
        """The actor layer registers ``services.domain_events``; until then events are dropped."""
        handler = services.domain_events
        await (handler or log_and_drop)(event)

    async with open_source(settings, services.instance_id) as source:
        subscriber = Subscriber(
            source,
            dispatch,
            metrics=services.metrics,
            max_attempts=settings.subscriber_max_attempts,
            handler_timeout=settings.subscriber_handler_timeout_s,
        )
        await subscriber.run()
