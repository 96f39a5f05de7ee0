"""The actor runtime's metric instruments: population, mailboxes, supervision, delivery failures.

The runtime owns its instruments; the process registers them on its one registry (the edge's
``Metrics``). Built without a registry they live on a private one, as tests and tools need.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ActorInstruments:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.actors_active = Gauge(
            "bff_actors_active",
            "Live (not failed) actors by kind",
            ["kind"],
            registry=r,
            multiprocess_mode="livesum",  # with worker processes: the instance's total
        )
        self.actors_failed = Gauge(
            "bff_actors_failed",
            "Actors whose supervisor gave up, by kind",
            ["kind"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.actor_mailbox_depth = Gauge(
            "bff_actor_mailbox_depth",
            "Messages queued in mailboxes, by kind",
            ["kind"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.actor_activations = Counter(
            "bff_actor_activations",
            "Actor activations (virtual actor brought to life)",
            ["kind"],
            registry=r,
        )
        self.actor_restarts = Counter(
            "bff_actor_restarts", "Supervisor restarts after a crash or kill", ["kind"], registry=r
        )
        self.actor_escalations = Counter(
            "bff_actor_escalations",
            "Supervisors that gave up (restart budget exhausted)",
            ["kind"],
            registry=r,
        )
        self.actor_passivations = Counter(
            "bff_actor_passivations", "Idle actors passivated", ["kind"], registry=r
        )
        self.actor_overloaded = Counter(
            "bff_actor_overloaded",
            "Messages refused because a mailbox stayed full",
            ["kind"],
            registry=r,
        )
        self.actor_ask_timeouts = Counter(
            "bff_actor_ask_timeouts",
            "Asks that got no reply before their deadline",
            ["kind"],
            registry=r,
        )
        self.actor_expired = Counter(
            "bff_actor_expired",
            "Asks dropped unprocessed because the asker had given up",
            ["kind"],
            registry=r,
        )
        self.actor_unavailable = Counter(
            "bff_actor_dependency_unavailable",
            "Messages answered 'dependency unavailable' (an outage, not a crash)",
            ["kind"],
            registry=r,
        )
        self.revocations_dropped = Counter(
            "bff_revocations_dropped",
            "Session ids in iam revocation events that were missing or malformed (not revoked)",
            ["subject"],
            registry=r,
        )
