"""Upstream contracts: what the BFF reads from and sends to each of the 14 domain services.

One module per upstream. The simulator (``ops/sim``) serves exactly these shapes and the upstream
clients (``edge/upstream``) decode with them, so a provider that drifts from its contract is
caught at decoding time (SCHEMA_DRIFT) instead of deep inside a handler.

Conventions: camelCase on the wire (``rename="camel"``), money as integer minor units plus an
ISO 4217 currency, dates ``YYYY-MM-DD``, timestamps ISO 8601 UTC. Response Structs ignore
unknown fields (a provider may add fields without breaking us); a missing field, a wrong type or
an unknown enum value is drift.
"""

from __future__ import annotations

from typing import Literal, get_args

UpstreamName = Literal[
    "iam",
    "tenant",
    "property",
    "reservation",
    "inventory",
    "pricing",
    "housekeeping",
    "maintenance",
    "billing",
    "lock",
    "ai",
    "notification",
    "sync",
    "analytics",
]

UPSTREAM_NAMES: tuple[UpstreamName, ...] = get_args(UpstreamName)
