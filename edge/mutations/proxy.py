"""One way to proxy a domain mutation or lock action upstream: checked, deduplicated, audited.

The order is the point (API contract §4, §9; FAILURE_MODES F-10, F-27, F-32)::

    route: path id, body (msgspec)          → 400 VALIDATION_FAILED naming the field
    perform: property scope                 → 403 PROPERTY_OUT_OF_SCOPE (the auth chain's
                                              check of the body's propertyId, again)
             Idempotency-Key present, sound → 400 (before a step-up is spent on a bad request)
             idempotent(…)                  → a replay, 409 in flight, 422 reused: no handler
    handler: MFA step-up (sensitive actions) → 401 MFA_REQUIRED / MFA_INVALID_OR_USED (the
                                              key is released; a replay needs none)
    then (shielded from a hang-up; each step has its own deadline):
             DeviceActor RecordMutationAttempt   durable before the upstream is called
             the upstream call, with the key      (its own deadline, retries only with the key)
             DeviceActor RecordMutationOutcome    outcome + operator activity, one append,
                                                  durable before the answer is sent
             PropertyActor MutationApplied        stale views voided/deleted, dashboard.hint
             the resource                         stored by the idempotency layer, replayed

A crash between the two records leaves an attempt without an outcome, which
``./ops/ledger verify`` reports. The outcome of an upstream that did not answer in time, or
answered something unreadable, is ``unknown``: it may have acted; the desktop retries with the
same key and the upstream absorbs the repeat.

Refusals: for the sensitive actions (``audit_refusals``: lock keys, folio refunds) a refusal
after the body was understood — a missing, reused or in-flight key, MFA missing, invalid, used
or unverifiable — is recorded too, as an attempt with a ``refused`` outcome in one append (and
the operator's activity row). Not recorded: the auth chain's refusals, a property out of scope
among them (the chain reads the body's ``propertyId`` before the route runs; counted by the
error metrics), malformed bodies (no target), and replays (not a new attempt: the first has its
rows). Refusal rows are best effort: with the ledger down the refusal is only counted
(``bff_mutation_audit_failures``), as nothing reached the upstream.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import trio
from quart import Response

from actors.address import device, property_
from actors.errors import (
    ActorCrashed,
    ActorError,
    AskTimeout,
    SystemNotRunning,
)
from actors.messages import Handled
from actors.mutations import (
    AuditContext,
    MutationAction,
    MutationRecorded,
    Outcome,
    RecordMutationAttempt,
    RecordMutationOutcome,
    SessionEnded,
)
from actors.property import MutationApplied
from edge.api import request_id
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.decoding import Malformed, convert
from edge.errors import ApiError, Code, code_for_actor_error
from edge.idempotency import idempotent, read_key
from edge.mutations.instruments import MutationInstruments, mutation_instruments
from edge.upstream.errors import UpstreamFailure, UpstreamRejected
from schemas.identifiers import Identifier
from schemas.upstream.iam import StepUpAction

log = logging.getLogger("bff.mutations")
R = TypeVar("R")
JSON = "application/json; charset=utf-8"
UNKNOWN_KINDS = ("timeout", "drift")  # the upstream may have acted
_encoder = msgspec.json.Encoder()
# What every mutation and lock route may answer beyond its auth chain and input checks.
ERRORS: tuple[Code, ...] = (
    Code.IDEMPOTENCY_KEY_REUSED,
    Code.IDEMPOTENCY_IN_FLIGHT,
    Code.NOT_FOUND,
    Code.CONFLICT,
    Code.UPSTREAM_UNAVAILABLE,
    Code.UPSTREAM_TIMEOUT,
    Code.SCHEMA_DRIFT,
    Code.SERVICE_UNAVAILABLE,
    Code.OVERLOADED,
)

Call = Callable[[str | None], Awaitable[R]]
"""The upstream call, given the Idempotency-Key to forward."""
Render = Callable[[R], tuple[msgspec.Struct, dict[str, Any] | None]]
"""The resource answered → (the response body, what the audit's outcome row keeps of it)."""


@dataclass(frozen=True)
class Mutation:
    """What is attempted, for the audit and the caches."""

    action: MutationAction
    target: str  # the target's ledger stream, e.g. "lock:res-1"
    property_id: str
    request: dict[str, Any] = field(default_factory=dict)  # the body's fields, for the audit
    stale: str | None = None  # the subject whose views the mutation makes stale
    mfa: StepUpAction | None = None  # the step-up action the mutation needs
    audit_refusals: bool = False


def path_id(name: str, value: str) -> str:
    """A path parameter that becomes part of a stream name and an upstream's URL: the one
    identifier alphabet, and not ``.``/``..`` (a dot segment would move the upstream path)."""
    try:
        checked: str = convert(value, Identifier, where=name)
    except Malformed as exc:
        raise ApiError(Code.VALIDATION_FAILED, f"{name}: {exc.detail}") from None
    if not checked.strip("."):
        raise ApiError(Code.VALIDATION_FAILED, f"{name}: not an identifier")
    return checked


def fields_of(body: msgspec.Struct) -> dict[str, Any]:
    """The body's fields for the audit's ``request`` (camelCase, the property id left out: it
    has its own column)."""
    found: dict[str, Any] = msgspec.to_builtins(body)
    found.pop("propertyId", None)
    return found


async def perform(
    services: Services,
    principal: Principal,
    mutation: Mutation,
    call: Call[R],
    render: Render[R],
) -> Response:
    """Run ``mutation`` as the module docstring describes; the answer is the rendered
    resource (200), or the contract's error."""
    return await _Run(services, principal, mutation).perform(call, render)


class _Run:
    """One request's mutation: what it has recorded so far."""

    def __init__(self, services: Services, principal: Principal, mutation: Mutation) -> None:
        self.services = services
        self.principal = principal
        self.mutation = mutation
        self.meters: MutationInstruments = mutation_instruments(services.metrics)
        self.attestation_id: str | None = None
        self.started = False  # the handler ran: it records its own outcome

    async def perform(self, call: Call[R], render: Render[R]) -> Response:
        try:
            self.principal.require_property(self.mutation.property_id)
            read_key(required=True)

            async def handler(key: str | None) -> Response:
                await self._step_up()
                return await self._handle(key, call, render)

            return await idempotent(self.services, self.principal, handler, required=True)
        except ApiError as exc:
            if self.mutation.audit_refusals and not self.started:
                await self._refused(exc)
            raise

    async def _step_up(self) -> None:
        """Inside the idempotency layer, so only a first run spends an attestation: a replay
        answers what was stored (the outbox drained twice after an outage needs no second
        MFA prompt), while an MFA refusal releases the key for a retry with a fresh one."""
        if self.mutation.mfa is not None:
            claims = await self.services.auth.stepup.require(self.principal, self.mutation.mfa)
            self.attestation_id = claims.jti

    async def _handle(self, key: str | None, call: Call[R], render: Render[R]) -> Response:
        """Shielded: a desktop that hangs up mid-action (an offline-first client on a flaky
        link) must not leave the action without its outcome. Every step has its own deadline
        (the actors' ask timeout, the upstream's policy), so the shield always ends, and the
        idempotency layer keeps the answer for the desktop's retry."""
        self.started = True
        with trio.CancelScope(shield=True):
            response = await self._execute(key, call, render)
        return response

    async def _execute(self, key: str | None, call: Call[R], render: Render[R]) -> Response:
        context = self._context(key)
        await self._attempt(context)
        try:
            resource = await call(key)
        except ApiError as exc:
            outcome, reason = _ended(exc)
            await self._outcome(context, outcome, reason, exc.message, exc.code.status)
            raise
        except Exception as exc:  # a bug: the audit still says the outcome is unknown
            await self._outcome(context, "unknown", "internal", type(exc).__name__, 500)
            raise
        body, result = render(resource)
        await self._outcome(context, "success", None, None, 200, result)
        await self._applied(context.attempt_id)
        return Response(
            _encoder.encode(body), content_type=JSON, headers={"Cache-Control": "no-store"}
        )

    def _context(self, key: str | None) -> AuditContext:
        principal, mutation = self.principal, self.mutation
        return AuditContext(
            attempt_id=uuid.uuid4().hex,
            action=mutation.action,
            target=mutation.target,
            property_id=mutation.property_id,
            operator_id=principal.operator_id,
            session_id=principal.session_id,
            idempotency_key=key,
            mfa_attestation_id=self.attestation_id,
            request=mutation.request or None,
            request_id=request_id() or None,
        )

    # --- the records ---------------------------------------------------------------------

    async def _attempt(self, context: AuditContext) -> None:
        """Durable before the upstream is called; if it cannot be recorded, nothing is sent
        (a retryable 503: the idempotency layer gives the key back)."""
        try:
            await self._ask_device(RecordMutationAttempt(context=context))
        except ApiError:
            self.meters.audit_failures.labels(self.mutation.action, "attempt").inc()
            raise

    async def _outcome(
        self,
        context: AuditContext,
        outcome: Outcome,
        reason: str | None,
        detail: str | None,
        status: int,
        result: dict[str, Any] | None = None,
    ) -> None:
        """Durable before the answer is sent. If it cannot be recorded the desktop gets a
        retryable 503 (the attempt stays open in the audit, and the retry, with the same key,
        is a replay at the upstream)."""
        message = RecordMutationOutcome(
            context=context,
            outcome=outcome,
            reason=reason,
            detail=None if detail is None else detail[:500],
            status=status,
            result=result,
        )
        try:
            await self._ask_device(message)
        except ApiError as exc:
            self.meters.audit_failures.labels(self.mutation.action, "outcome").inc()
            log.error(
                "mutation outcome not recorded",
                extra={
                    "action": context.action,
                    "target": context.target,
                    "attemptId": context.attempt_id,
                    "outcome": outcome,
                },
            )
            raise ApiError(
                exc.code if exc.code.retryable else Code.SERVICE_UNAVAILABLE,
                f"{context.action}: the outcome could not be recorded; retry with the same "
                "Idempotency-Key",
            ) from None
        self.meters.outcomes.labels(context.action, outcome).inc()

    async def _refused(self, refusal: ApiError) -> None:
        """Record a refused attempt (best effort: nothing reached the upstream)."""
        context = self._context(_key_given())
        message = RecordMutationOutcome(
            context=context,
            outcome="refused",
            reason=refusal.code.wire,
            detail=refusal.message[:500],
            status=refusal.code.status,
        )
        try:
            await self._ask_device(message)
        except ApiError as exc:
            self.meters.audit_failures.labels(self.mutation.action, "refusal").inc()
            log.warning(
                "refused attempt not recorded",
                extra={"action": context.action, "reason": refusal.code.wire, "error": exc.message},
            )
            return
        self.meters.outcomes.labels(context.action, "refused").inc()

    async def _applied(self, attempt_id: str) -> None:
        """Void and hint the views the mutation made stale, before the desktop hears back (its
        next read must show the change). Best effort: the entries expire in seconds and the
        domain event, when it arrives, invalidates them again."""
        subject = self.mutation.stale
        if subject is None:
            return
        address = property_(self.principal.tenant, self.mutation.property_id)
        try:
            answer = await self.services.actors.ask(
                address, MutationApplied(subject=subject, key=attempt_id)
            )
        except (ActorError, SystemNotRunning) as exc:
            self.meters.invalidation_failures.labels(self.mutation.action).inc()
            log.warning(
                "views not invalidated after a mutation",
                extra={"action": self.mutation.action, "error": str(exc)[:200]},
            )
            return
        if not isinstance(answer, Handled):
            self.meters.invalidation_failures.labels(self.mutation.action).inc()

    async def _ask_device(
        self, message: RecordMutationAttempt | RecordMutationOutcome
    ) -> MutationRecorded:
        address = device(self.principal.tenant, self.principal.device_id)
        try:
            answer = await self.services.actors.ask(address, message)
        except SessionEnded:
            raise ApiError(Code.SESSION_EXPIRED, "the session has ended") from None
        except ActorError as exc:
            code = code_for_actor_error(exc)
            if isinstance(exc, AskTimeout | ActorCrashed):
                log.warning("audit row outcome unknown", extra={"error": str(exc)[:200]})
            raise ApiError(code, "the action could not be recorded; retry") from None
        except SystemNotRunning:
            raise ApiError(Code.SERVICE_UNAVAILABLE, "the action could not be recorded") from None
        if not isinstance(answer, MutationRecorded):
            raise ApiError(Code.INTERNAL, f"unexpected reply {type(answer).__name__}")
        return answer


def _ended(exc: ApiError) -> tuple[Outcome, str]:
    """How a failed upstream call ends in the audit: ``unknown`` when the mutation may have
    been applied (no answer in time, or an unreadable one), else ``failure`` with its reason
    (a read made first, such as the folio's currency, never applied anything)."""
    if isinstance(exc, UpstreamFailure):
        unknown = exc.mutation and exc.kind in UNKNOWN_KINDS
        return ("unknown" if unknown else "failure"), exc.kind
    if isinstance(exc, UpstreamRejected):
        return "failure", exc.upstream_code[:100]
    return "failure", exc.code.wire


def _key_given() -> str | None:
    """The Idempotency-Key as sent, if it is sound (for a refusal's audit row)."""
    try:
        return read_key(required=False)
    except ApiError:
        return None
