"""The one pooled HTTP client for every upstream: policy, retries, breaker, deadline, decoding.

Cancel-safety: httpcore 1.0.9 can leak a pool slot when a request is cancelled while it waits
for a connection under pool contention (encode/httpcore#1093, open). Each upstream therefore has
its own concurrency limit (a Trio ``CapacityLimiter``, cancel-safe; operations in a policy lane
have their lane's) and the pool is sized to the sum of those limits, so httpcore never queues:
waiting happens in Trio, not in httpcore. That wait is part of an attempt's budget but not the
upstream's doing: a timeout spent queueing, or after queueing took part of the budget, does
not count against the upstream's circuit (a half-open trial's timeout aside).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import msgspec
import trio
from opentelemetry.trace import Span

from edge import tracing
from edge.metrics import Metrics
from edge.upstream.breaker import CircuitBreaker, CircuitOpen
from edge.upstream.deadline import MIN_ATTEMPT_S, attempt_budget, time_left
from edge.upstream.errors import FailureKind, UpstreamFailure, UpstreamRejected
from edge.upstream.idtoken import IdTokens, IdTokenUnavailable
from edge.upstream.policy import BACKOFF_BASE_S, BACKOFF_CAP_S, Policy
from schemas.upstream import UPSTREAM_NAMES, UpstreamName
from schemas.upstream.common import UpstreamErrorEnvelope

T = TypeVar("T")
log = logging.getLogger("bff.upstream")
_error_decoder = msgspec.json.Decoder(UpstreamErrorEnvelope)
_encoder = msgspec.json.Encoder()
_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<field>[^`]+)`")


@dataclass(frozen=True)
class Upstream:
    name: UpstreamName
    base_url: str
    policy: Policy
    breaker: CircuitBreaker
    limiter: trio.CapacityLimiter
    # The limit of each lane of the policy's (edge/upstream/policy.py), by lane name.
    lanes: Mapping[str, trio.CapacityLimiter] = field(default_factory=dict)

    def limiter_for(self, op: str) -> trio.CapacityLimiter:
        """The limit ``op`` waits for: its lane's, else the upstream's shared one."""
        lane = self.policy.lane(op)
        return self.lanes[lane] if lane is not None else self.limiter


class _AttemptFailed(Exception):
    """One attempt failed; ``counts`` says whether it tells against the upstream's health."""

    def __init__(self, kind: FailureKind, detail: str, *, retryable: bool, counts: bool) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.retryable = retryable
        self.counts = counts


class UpstreamClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        upstreams: Mapping[UpstreamName, Upstream],
        id_tokens: IdTokens,
        metrics: Metrics,
    ) -> None:
        self.http = http
        self.upstreams = upstreams
        self._id_tokens = id_tokens
        self._metrics = metrics
        self._decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}
        self._rng = random.Random()

    async def call(
        self,
        upstream: UpstreamName,
        method: str,
        path: str,
        model: type[T],
        *,
        op: str,
        body: msgspec.Struct | None = None,
        params: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
        headers: Mapping[str, str] | None = None,
        mutation: bool | None = None,
    ) -> T:
        """Call ``method {base}{path}`` and decode the 2xx answer into ``model``.

        Raises :class:`UpstreamFailure` (timeout, 5xx, connection, open circuit, drift) or
        :class:`UpstreamRejected` (4xx).
        """
        target = self.upstreams[upstream]
        is_mutation = method != "GET" if mutation is None else mutation
        attempts = target.policy.attempts(mutation=is_mutation, idempotency_key=idempotency_key)
        policy_timeout = target.policy.timeout_s(op, mutation=is_mutation)
        content = _encoder.encode(body) if body is not None else None
        base_headers = {"Accept": "application/json", **(headers or {})}
        if content is not None:
            base_headers["Content-Type"] = "application/json"
        if idempotency_key:
            base_headers["Idempotency-Key"] = idempotency_key
        with tracing.span("upstream", upstream, op, kind=tracing.CLIENT) as span:
            tracing.inject(base_headers)
            last: _AttemptFailed | None = None
            attempt = 0
            for attempt in range(1, attempts + 1):
                if attempt > 1:
                    if not await self._backoff(attempt):
                        break
                    self._metrics.upstream_retries.labels(upstream, op).inc()
                try:
                    answer = await self._attempt(
                        target, method, path, op, policy_timeout, params, content, base_headers
                    )
                except _AttemptFailed as failed:
                    last = failed
                    if span is not None:
                        span.add_event("attempt failed", {"attempt": attempt, "kind": failed.kind})
                    if not failed.retryable:
                        break
                    continue
                if span is not None:
                    status = answer.status_code
                    outcome = "ok" if status < 400 else "rejected"
                    _describe(span, upstream, op, method, attempt, status, outcome)
                return self._decode(target, op, answer, model, mutation=is_mutation)
            assert last is not None
            if span is not None:
                _describe(span, upstream, op, method, attempt, 0, last.kind)
            raise UpstreamFailure(upstream, op, last.kind, last.detail, mutation=is_mutation)

    async def _backoff(self, attempt: int) -> bool:
        """Sleep before a retry; False when the caller's deadline leaves no room for one."""
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 2))
        pause = ceiling / 2 + self._rng.uniform(0, ceiling / 2)
        if time_left() < pause + MIN_ATTEMPT_S * 2:
            return False
        await trio.sleep(pause)
        return True

    async def _attempt(
        self,
        target: Upstream,
        method: str,
        path: str,
        op: str,
        policy_timeout: float,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
    ) -> httpx.Response:
        name = target.name
        budget, capped = attempt_budget(policy_timeout)
        if budget < MIN_ATTEMPT_S:
            self._metrics.upstream_requests.labels(name, op, "deadline").inc()
            raise _AttemptFailed(
                "timeout", "caller's deadline already spent", retryable=False, counts=False
            )
        started = trio.current_time()
        try:
            with target.breaker.attempt() as permit:
                # A trial runs shielded (it cannot be abandoned by its caller) within ``budget``.
                try:
                    answer = await self._send(
                        target,
                        method,
                        path,
                        op,
                        budget,
                        capped,
                        params,
                        content,
                        headers,
                        trial=permit.trial,
                    )
                except _AttemptFailed as failed:
                    if failed.counts:
                        permit.failure()
                    raise
                finally:
                    self._metrics.upstream_latency.labels(name, op).observe(
                        trio.current_time() - started
                    )
                permit.success()  # _send raises on a 5xx: the upstream answered
                return answer
        except CircuitOpen:
            self._metrics.upstream_requests.labels(name, op, "circuit_open").inc()
            raise _AttemptFailed(
                "circuit_open", "circuit open", retryable=False, counts=False
            ) from None

    async def _send(
        self,
        target: Upstream,
        method: str,
        path: str,
        op: str,
        budget: float,
        capped: bool,
        params: Mapping[str, str] | None,
        content: bytes | None,
        headers: dict[str, str],
        *,
        trial: bool = False,
    ) -> httpx.Response:
        """One request within ``budget``. A ``trial``'s timeout always counts against the
        upstream: a trial that cannot answer in time has not shown that it is back."""
        name = target.name
        answer: httpx.Response | None = None
        queued_at = trio.current_time()
        waited: float | None = None  # in this process's queue, until the attempt holds its limit
        with trio.move_on_after(budget) as scope:
            async with target.limiter_for(op):
                waited = trio.current_time() - queued_at
                try:
                    token = await self._id_tokens.token(target.base_url)
                except IdTokenUnavailable as exc:
                    self._metrics.upstream_requests.labels(name, op, "auth_error").inc()
                    raise _AttemptFailed("auth", str(exc), retryable=False, counts=False) from None
                sent = {**headers, "X-Deadline-Ms": str(max(1, int(budget * 1000)))}
                if token:
                    sent["Authorization"] = f"Bearer {token}"
                try:
                    answer = await self.http.request(
                        method, target.base_url + path, params=params, content=content, headers=sent
                    )
                except httpx.HTTPError as exc:
                    self._metrics.upstream_requests.labels(name, op, "connect_error").inc()
                    raise _AttemptFailed(
                        "connect", f"{type(exc).__name__}", retryable=True, counts=True
                    ) from None
        if scope.cancelled_caught and waited is None:
            # Spent waiting behind this process's own calls: the upstream was never asked, so
            # this says nothing about its health (the calls holding the limit will tell).
            self._metrics.upstream_requests.labels(name, op, "queued").inc()
            raise _AttemptFailed(
                "timeout",
                f"no free connection within {int(budget * 1000)} ms (too many calls in flight)",
                retryable=False,
                counts=False,
            )
        if scope.cancelled_caught or answer is None:
            self._metrics.upstream_requests.labels(name, op, "timeout").inc()
            why = "caller's deadline" if capped else f"{int(budget * 1000)} ms timeout"
            # The upstream had less than its policy timeout when the queue took part of it: a
            # timeout then tells against this process's load, not against the upstream.
            queued = waited is not None and waited >= MIN_ATTEMPT_S
            raise _AttemptFailed(
                "timeout",
                f"no answer within {int(budget * 1000)} ms ({why})",
                retryable=not capped,
                counts=trial or not (capped or queued),
            )
        if answer.status_code >= 500:
            self._metrics.upstream_requests.labels(name, op, "error").inc()
            raise _AttemptFailed(
                "unavailable", f"answered {answer.status_code}", retryable=True, counts=True
            )
        outcome = "ok" if answer.status_code < 400 else "rejected"
        self._metrics.upstream_requests.labels(name, op, outcome).inc()
        return answer

    def _decode(
        self, target: Upstream, op: str, answer: httpx.Response, model: type[T], *, mutation: bool
    ) -> T:
        if answer.status_code >= 400:
            raise self._rejected(target.name, op, answer)
        decoder = self._decoders.get(model)
        if decoder is None:
            decoder = self._decoders[model] = msgspec.json.Decoder(model)
        try:
            result: T = decoder.decode(answer.content)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            field = drift_field(exc)
            self._metrics.upstream_schema_drift.labels(target.name, op).inc()
            log.error(
                "upstream schema drift",
                extra={
                    "upstream": target.name,
                    "operation": op,
                    "field": field,
                    "detail": str(exc)[:300],
                    "status": answer.status_code,
                },
            )
            raise UpstreamFailure(
                target.name, op, "drift", f"schema drift at {field}", mutation=mutation
            ) from None
        return result

    def _rejected(self, name: str, op: str, answer: httpx.Response) -> UpstreamRejected:
        try:
            error = _error_decoder.decode(answer.content).error
            code, message = error.code, error.message
        except msgspec.DecodeError:
            code, message = "UNKNOWN", f"{name} answered {answer.status_code}"
        return UpstreamRejected(name, op, answer.status_code, code, f"{name}: {message}"[:300])


def _describe(
    span: Span, upstream: str, op: str, method: str, attempts: int, status: int, outcome: str
) -> None:
    """An upstream call's span attributes (edge/tracing.py): what was called and how it went."""
    span.set_attributes(
        {
            "peer.service": upstream,
            "bff.upstream.operation": op,
            "http.request.method": method,
            "http.response.status_code": status,
            "bff.upstream.outcome": outcome,
            "bff.upstream.retries": max(0, attempts - 1),
        }
    )


def drift_field(exc: msgspec.DecodeError) -> str:
    """The JSON path a msgspec error points at: ``items[0].guest`` (or ``$`` for the root)."""
    text = str(exc)
    at = _PATH.search(text)
    path = at.group("path") if at else ""
    missing = _MISSING.search(text)
    if missing:
        path = f"{path}.{missing.group('field')}" if path else missing.group("field")
    return path or "$"


def pool_limits(per_upstream: int, lanes: int = 0) -> httpx.Limits:
    """As many connections as calls may be in flight: every upstream's limit plus ``lanes``
    (the sum of the lanes' limits), so httpcore never queues."""
    total = per_upstream * len(UPSTREAM_NAMES) + lanes
    return httpx.Limits(
        max_connections=total, max_keepalive_connections=total, keepalive_expiry=30.0
    )
