"""Per-upstream timeouts and retries: DEPLOYMENT_TOPOLOGY §3, exactly.

=============  =====================================  ===========================
upstream       timeout                                retries
=============  =====================================  ===========================
iam            600 ms (refresh), 200 ms (validate)     0
tenant         500 ms                                  1
reservation    800 ms (read), 1500 ms (mutation)       1, mutations only (with key)
inventory      600 ms                                  1
pricing        600 ms                                  1
housekeeping   700 ms                                  1
maintenance    700 ms                                  1
billing        600 ms                                  1
lock           1200 ms                                 0 (sensitive)
ai             800 ms                                  0
notification   500 ms                                  1
sync           700 ms                                  0 (handshake only)
analytics      600 ms                                  1
property       800 ms                                  1
=============  =====================================  ===========================

A retry count applies to reads always and to mutations only when they carry an
``Idempotency-Key`` (a mutation without one is never sent twice). iam's calls are classed by
operation: validate-like calls (session lookup, attestStepUp, refresh-token introspection) get
200 ms, refresh-like calls (refresh, sign-out, JWKS) 600 ms.

Concurrency: each upstream has one limit of requests in flight (``BFF_UPSTREAM_CONCURRENCY``),
except operations a policy puts in a **lane** of their own, which wait for and hold only their
lane's limit. iam's token-refresh operations (introspection and rotation, driven by devices and
so by anyone on the internet) have the ``refresh`` lane (``BFF_UPSTREAM_REFRESH_CONCURRENCY``):
a refresh flood while iam is slow queues behind itself, never in front of JWKS or step-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from schemas.upstream import UpstreamName


@dataclass(frozen=True)
class Policy:
    read_timeout_s: float
    mutation_timeout_s: float
    read_retries: int
    mutation_retries: int  # used only when the mutation carries an Idempotency-Key
    op_timeouts_s: Mapping[str, float] = field(default_factory=dict)
    lanes: Mapping[str, str] = field(default_factory=dict)  # operation -> its own lane

    def lane(self, op: str) -> str | None:
        """The lane ``op`` waits in, or ``None`` for the upstream's shared limit."""
        return self.lanes.get(op)

    def timeout_s(self, op: str, *, mutation: bool) -> float:
        if op in self.op_timeouts_s:
            return self.op_timeouts_s[op]
        return self.mutation_timeout_s if mutation else self.read_timeout_s

    def attempts(self, *, mutation: bool, idempotency_key: str | None) -> int:
        if not mutation:
            return 1 + self.read_retries
        return 1 + (self.mutation_retries if idempotency_key else 0)


REFRESH_LANE = "refresh"


def _same(timeout_s: float, retries: int) -> Policy:
    return Policy(timeout_s, timeout_s, retries, retries)


POLICIES: Mapping[UpstreamName, Policy] = MappingProxyType(
    {
        "iam": Policy(
            0.2,
            0.6,
            0,
            0,
            {
                "attestStepUp": 0.2,
                "validate": 0.2,
                "introspectRefresh": 0.2,
                "refresh": 0.6,
                "signOut": 0.6,
                "jwks": 0.6,
            },
            lanes={"introspectRefresh": REFRESH_LANE, "refresh": REFRESH_LANE},
        ),
        "tenant": _same(0.5, 1),
        "reservation": Policy(0.8, 1.5, 0, 1),
        "inventory": _same(0.6, 1),
        "pricing": _same(0.6, 1),
        "housekeeping": _same(0.7, 1),
        "maintenance": _same(0.7, 1),
        "billing": _same(0.6, 1),
        "lock": _same(1.2, 0),
        "ai": _same(0.8, 0),
        "notification": _same(0.5, 1),
        "sync": _same(0.7, 0),
        "analytics": _same(0.6, 1),
        "property": _same(0.8, 1),
    }
)

# Backoff between attempts: equal jitter around BASE·2^(n-1), capped.
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 0.4
