"""Every drill, by failure-catalogue row (FAILURE_MODES §1), and the rows no drill can reproduce
on one machine, with what checks them in production instead."""

from __future__ import annotations

# Importing a rows module registers its drills: rows_upstream F-1…F-16 and F-33; rows_app
# F-27…F-32, F-35, F-36; rows_state F-17…F-22, F-26, F-34, F-37 and actor kills.
from ops.drills import framework, rows_app, rows_state, rows_upstream

__all__ = ["NOT_REPRODUCIBLE", "drills", "rows_app", "rows_state", "rows_upstream"]

NOT_REPRODUCIBLE: dict[str, str] = {
    "F-23": "TLS certificate expiry: TLS ends at the Google front end, not in this process; "
    "production: the uptime check's certificate-expiry alert at T-30/7/1 days",
    "F-24": "Cloud Armor false positives: no WAF in front of the local stack; production: the "
    "403-by-source-IP dashboard and a staged soak of every rule change",
    "F-25": "DNS regression: the local stack is addressed by IP; production: the synthetic "
    "uptime check against backoffice.melmastoon.ghasi.io from three regions",
    "F-38": "DLQ spike: no fault here makes the bus dead-letter at scale; the replay tool and "
    "the 7-day retention are tested in the suite (tests/edge/bus/test_dead_letters.py); "
    "production: the dead-letter subscription's num_undelivered_messages alert",
    "F-39": "Cloud Run cost spike: billing; production: the budget alert and the instance-count "
    "metric",
    "F-40": "Pub/Sub egress cost: billing; the sample-rate flag it calls for is tested in the "
    "suite (tests for the telemetry flag); production: the billing alert",
    "F-41": "DPoP jti cache memory pressure: needs Memorystore's eviction metrics; the bounded "
    "TTL of every jti key is asserted by the suite",
}


def drills() -> list[framework.Drill]:
    return sorted(framework.REGISTRY.values(), key=lambda d: framework.row_key(d.row))
