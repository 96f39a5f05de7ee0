"""The idempotency layer (API contract §4): a mutation sent again with the same
``Idempotency-Key`` is answered, never applied again.

Stripe's design and the IETF Idempotency-Key draft, over ``ledger.idempotency`` (Postgres).
Keys are scoped to ``(tenant, device)``; a request is identified by its fingerprint (method,
route template, path parameters, query, operator and raw body), so a key sent with another
request — or by another operator on a shared desk — is 422 ``IDEMPOTENCY_KEY_REUSED``, never
someone else's answer.

What a route's handler may count on (:func:`idempotent`):

* it runs at most once per key at a time: a second request while the first holds the key is
  409 ``IDEMPOTENCY_IN_FLIGHT`` (retryable, ``Retry-After``);
* a final answer is stored and replayed to every retry, byte for byte, with
  ``Idempotent-Replayed: true``, without calling the handler (so without any upstream call);
* it gets the key to forward upstream: if this instance crashes between the upstream's success
  and storing the answer, the row stays in flight until its lease ends, then a retry runs the
  handler again and the upstream absorbs the repeated key (FAILURE_MODES F-32);
* Postgres down means the claim fails before the handler runs: 503, never an un-deduplicated
  mutation (F-20).

What is stored, and why. A returned response is stored when it is final: any status below 500
but 408, 425 and 429. A raised :class:`ApiError` is stored (as the envelope the app would have
sent) when it is a verdict on the request itself — the upstream's NOT_FOUND, CONFLICT,
VALIDATION_FAILED, SCHEMA_DRIFT: the same bytes would get the same verdict, so a retry learns it
without asking again. Not stored, and the claim released so the retry runs: retryable codes
(UPSTREAM_UNAVAILABLE, UPSTREAM_TIMEOUT, SERVICE_UNAVAILABLE, CACHE_UNAVAILABLE, OVERLOADED,
RATE_LIMITED, INTERNAL…), any other exception, cancellation, and the codes about the caller's
credentials rather than the request (MFA, session, scope: ``_ABOUT_THE_CALLER``) — a retry with
a fresh MFA attestation carries the same fingerprint and must run. Routes check the body and
the property scope *before* calling :func:`idempotent`, so those refusals never claim a key; the
mutation pipeline asks for the MFA step-up *inside* the handler, so a replay needs no fresh
attestation (``edge/mutations/proxy.py``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import trio
from quart import Response, request
from quart.wrappers.response import DataBody

from edge.api import request_id
from edge.auth.principal import Principal
from edge.errors import ApiError, Code, envelope_bytes
from edge.idempotency_instruments import IdempotencyInstruments, idempotency_instruments
from edge.metrics import Metrics
from edge.settings import redact_url
from ledger.database import DatabaseUnavailable
from ledger.idempotency import (
    Claimed,
    ClaimOutcome,
    IdempotencyStore,
    InFlight,
    Replay,
    Reused,
    StoredResponse,
)

if TYPE_CHECKING:
    from edge.assembly import Services

log = logging.getLogger("bff.idempotency")
T = TypeVar("T")
Handler = Callable[[str | None], Awaitable[Response]]

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY = 128
MAX_STORED_BODY = 1 << 20  # a mutation's answer is a resource, far smaller; larger is not kept
RETRY_AFTER_S = 1  # a 409 is cheap, and the first request usually ends within an upstream call
JSON = "application/json; charset=utf-8"
_KEY = re.compile(rf"[\x20-\x7e]{{1,{MAX_KEY}}}")
_NOT_FINAL = frozenset({408, 425, 429})
# Per-request or per-connection headers: the replay gets its own.
_NOT_REPLAYED = frozenset(
    {
        "content-type",
        "content-length",
        "date",
        "server",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "set-cookie",
        "x-request-id",
        REPLAYED.lower(),
    }
)
# Refusals about who is calling, not what they asked: decided by headers the fingerprint leaves
# out (the token, the MFA attestation), so a retry that fixes them must run.
_ABOUT_THE_CALLER = frozenset(
    {
        Code.SESSION_REQUIRED,
        Code.DPOP_INVALID,
        Code.SESSION_EXPIRED,
        Code.DEVICE_MISMATCH,
        Code.TENANT_SUSPENDED,
        Code.PROPERTY_OUT_OF_SCOPE,
        Code.SYNC_VERSION_BLOCKED,
        Code.MFA_REQUIRED,
        Code.MFA_INVALID_OR_USED,
        Code.IDEMPOTENCY_KEY_REQUIRED,
        Code.IDEMPOTENCY_KEY_REUSED,
    }
)


async def idempotent(
    services: Services,
    principal: Principal,
    handler: Handler,
    *,
    required: bool,
) -> Response:
    """Run ``handler(key)`` at most once per (tenant, device, Idempotency-Key) and answer every
    repeat of the same request with the first final answer (``Idempotent-Replayed: true``).

    Without the header: 400 ``IDEMPOTENCY_KEY_REQUIRED`` when ``required``, else
    ``handler(None)`` runs with no deduplication. A malformed key is 400 ``VALIDATION_FAILED``;
    the key used for another request 422 ``IDEMPOTENCY_KEY_REUSED``; the same request still
    running 409 ``IDEMPOTENCY_IN_FLIGHT``; Postgres down 503 ``SERVICE_UNAVAILABLE`` (the
    handler never runs). See the module docstring for what is stored."""
    key = read_key(required=required)
    if key is None:
        return await handler(None)
    meters = idempotency_instruments(services.metrics)
    store = services.idempotency
    digest = await fingerprint(principal)
    outcome: ClaimOutcome = await _measured(
        meters, "claim", store.claim(principal.tenant, principal.device_id, key, digest)
    )
    if isinstance(outcome, Replay):
        meters.outcomes.labels("replayed").inc()
        return replayed(outcome.response)
    if isinstance(outcome, Reused):
        meters.outcomes.labels("reused").inc()
        raise ApiError(
            Code.IDEMPOTENCY_KEY_REUSED, f"{HEADER}: already used for a different request"
        )
    if isinstance(outcome, InFlight):
        meters.outcomes.labels("in_flight").inc()
        raise ApiError(
            Code.IDEMPOTENCY_IN_FLIGHT,
            f"a request with this {HEADER} is still running; retry",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    meters.outcomes.labels("taken_over" if outcome.taken_over else "claimed").inc()
    if outcome.taken_over:
        log.warning(
            "idempotency key taken over after its lease ran out",
            extra={"requestId": request_id(), "tenant": principal.tenant},
        )
    return await _run(services, meters, outcome, handler)


def read_key(*, required: bool) -> str | None:
    """The request's ``Idempotency-Key``: 1 to 128 printable ASCII characters, given once."""
    given = request.headers.getlist(HEADER)
    if not given:
        if required:
            raise ApiError(Code.IDEMPOTENCY_KEY_REQUIRED, f"{HEADER}: required on this route")
        return None
    if len(given) > 1:
        raise ApiError(Code.VALIDATION_FAILED, f"{HEADER}: given more than once")
    if not _KEY.fullmatch(given[0]):
        raise ApiError(
            Code.VALIDATION_FAILED, f"{HEADER}: 1 to {MAX_KEY} printable ASCII characters"
        )
    return given[0]


async def fingerprint(principal: Principal) -> bytes:
    """SHA-256 over what makes two requests the same command: method, route template, path
    parameters and query (sorted), the operator, and the raw body bytes. Each part is length
    prefixed, so no two different requests can run together into the same input."""
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    params = sorted((request.view_args or {}).items())
    query = sorted(request.args.items(multi=True))
    raw = await request.get_data(as_text=False)
    body = raw if isinstance(raw, bytes) else raw.encode()
    parts = [request.method, rule, principal.operator_id]
    parts += [f"{name}={value}" for name, value in params]
    parts += ["?"] + [f"{name}={value}" for name, value in query]
    digest = hashlib.sha256()
    for part in [p.encode() for p in parts] + [body]:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def replayed(stored: StoredResponse) -> Response:
    """The stored answer as a response, marked as a replay."""
    response = Response(stored.body, status=stored.status, content_type=stored.content_type)
    for name, value in stored.headers:
        response.headers.add(name, value)
    response.headers[REPLAYED] = "true"
    return response


def stores_error(code: Code) -> bool:
    """Whether a handler's ``ApiError`` with ``code`` is the request's final answer."""
    return not code.retryable and code not in _ABOUT_THE_CALLER


async def run_idempotency_cleanup(
    store: IdempotencyStore,
    metrics: Metrics,
    interval_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Delete expired keys every ``interval_s`` until cancelled. A failed run (Postgres down)
    is logged and counted and tried again next time; it never stops the process."""
    meters = idempotency_instruments(metrics)
    task_status.started()
    while True:
        try:
            deleted = await store.prune()
        except Exception as exc:  # whatever it was, the next run tries again
            meters.cleanup_failures.inc()
            log.warning(
                "idempotency cleanup failed; retrying next interval",
                extra={"error": redact_url(f"{type(exc).__name__}: {exc}")[:300]},
            )
        else:
            meters.pruned.inc(deleted)
            if deleted:
                log.info("idempotency cleanup deleted expired keys", extra={"rows": deleted})
        await trio.sleep(interval_s)


# --- running a claimed request -----------------------------------------------------------------


async def _run(
    services: Services, meters: IdempotencyInstruments, claim: Claimed, handler: Handler
) -> Response:
    """Run the handler under the claim, then store its final answer or give the key back."""
    store = services.idempotency
    try:
        response = await handler(claim.key)
    except ApiError as exc:
        if not stores_error(exc.code):
            await _release(store, meters, claim)
            raise
        services.metrics.errors.labels(exc.code.wire).inc()  # as the app's error handler does
        body = envelope_bytes(exc.code, exc.message, request_id())
        response = Response(body, status=exc.code.status, content_type=JSON, headers=exc.headers)
    except BaseException:  # any other failure, and cancellation: the retry must run
        await _release(store, meters, claim)
        raise
    else:  # a returned response: final unless its status says "try again"
        if response.status_code >= 500 or response.status_code in _NOT_FINAL:
            await _release(store, meters, claim)
            return response
    stored = await _storable(response)
    if stored is None:
        meters.outcomes.labels("unstored").inc()
        log.error(
            "final response not storable (streamed or too large); key released",
            extra={"requestId": request_id()},
        )
        await _release(store, meters, claim)
        return response
    await _complete(store, meters, claim, stored)
    return response


async def _storable(response: Response) -> StoredResponse | None:
    """The response as it will be replayed; None when it cannot be kept whole."""
    if not isinstance(response.response, DataBody):
        return None
    body = await response.get_data(as_text=False)
    if len(body) > MAX_STORED_BODY:
        return None
    headers = tuple(
        (name, value)
        for name, value in response.headers.items()
        if name.lower() not in _NOT_REPLAYED
    )
    return StoredResponse(
        status=response.status_code,
        body=body,
        content_type=response.content_type or "application/octet-stream",
        headers=headers,
    )


async def _complete(
    store: IdempotencyStore, meters: IdempotencyInstruments, claim: Claimed, stored: StoredResponse
) -> None:
    """Store the answer, shielded: a client that hung up after the handler finished must not
    leave the key in flight. Failing to store never fails the request (it is done): the row
    stays in flight until its lease ends, and then a retry runs again, absorbed upstream."""
    with trio.CancelScope(shield=True):
        try:
            kept = await _measured(meters, "complete", store.complete(claim, stored))
        except DatabaseUnavailable as exc:
            log.warning(
                "idempotent response not stored",
                extra={"requestId": request_id(), "error": redact_url(str(exc))[:300]},
            )
            return
    meters.outcomes.labels("stored" if kept else "lost").inc()
    if not kept:
        log.warning(
            "idempotency key was taken over before the response could be stored",
            extra={"requestId": request_id()},
        )


async def _release(store: IdempotencyStore, meters: IdempotencyInstruments, claim: Claimed) -> None:
    """Give the key back so the retry runs, shielded (it runs while a cancellation unwinds);
    if Postgres cannot be told, the lease ends the claim instead."""
    with trio.CancelScope(shield=True):
        try:
            released = await _measured(meters, "release", store.release(claim))
        except DatabaseUnavailable as exc:
            log.warning(
                "idempotency key not released; its lease will end it",
                extra={"requestId": request_id(), "error": redact_url(str(exc))[:300]},
            )
            return
    meters.outcomes.labels("released" if released else "lost").inc()


async def _measured(meters: IdempotencyInstruments, operation: str, call: Awaitable[T]) -> T:
    """Await one store operation, timing it and counting an outage."""
    started = time.perf_counter()
    try:
        return await call
    except DatabaseUnavailable:
        meters.store_failures.labels(operation).inc()
        raise
    finally:
        meters.store_seconds.labels(operation).observe(time.perf_counter() - started)
