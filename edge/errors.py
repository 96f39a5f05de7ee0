"""Error codes of the contract (§3) and the one way to turn any failure into the error envelope."""

from __future__ import annotations

import enum

import msgspec

from actors.errors import (
    ActorError,
    CommandRejected,
    DependencyUnavailable,
    OverloadedError,
)
from schemas.errors import ErrorBody, ErrorEnvelope


class Code(enum.Enum):
    """Each code with its HTTP status and whether a client may retry the same request."""

    SESSION_REQUIRED = ("SESSION_REQUIRED", 401, False)
    DPOP_INVALID = ("DPOP_INVALID", 401, False)
    SESSION_EXPIRED = ("SESSION_EXPIRED", 401, False)
    DEVICE_MISMATCH = ("DEVICE_MISMATCH", 403, False)
    TENANT_SUSPENDED = ("TENANT.SUSPENDED", 503, False)
    PROPERTY_OUT_OF_SCOPE = ("PROPERTY_OUT_OF_SCOPE", 403, False)
    CACHE_UNAVAILABLE = ("CACHE_UNAVAILABLE", 503, True)
    SYNC_VERSION_BLOCKED = ("SYNC.VERSION_BLOCKED", 426, False)
    VALIDATION_FAILED = ("VALIDATION_FAILED", 400, False)
    IDEMPOTENCY_KEY_REQUIRED = ("IDEMPOTENCY_KEY_REQUIRED", 400, False)
    IDEMPOTENCY_KEY_REUSED = ("IDEMPOTENCY_KEY_REUSED", 422, False)
    IDEMPOTENCY_IN_FLIGHT = ("IDEMPOTENCY_IN_FLIGHT", 409, True)
    MFA_REQUIRED = ("MFA_REQUIRED", 401, False)
    MFA_INVALID_OR_USED = ("MFA_INVALID_OR_USED", 401, False)
    NOT_FOUND = ("NOT_FOUND", 404, False)
    RATE_LIMITED = ("RATE_LIMITED", 429, True)
    UPSTREAM_UNAVAILABLE = ("UPSTREAM_UNAVAILABLE", 502, True)
    UPSTREAM_TIMEOUT = ("UPSTREAM_TIMEOUT", 504, True)
    # A drifting upstream does not heal on retry: the same request drifts again.
    SCHEMA_DRIFT = ("SCHEMA_DRIFT", 502, False)
    # Not pinned by the contract; documented in the OpenAPI document.
    METHOD_NOT_ALLOWED = ("METHOD_NOT_ALLOWED", 405, False)
    PAYLOAD_TOO_LARGE = ("PAYLOAD_TOO_LARGE", 413, False)
    # The request line and headers are over 16 KiB (edge/asgi.py HeadLimit), or hypercorn's
    # parser gave up on them (edge/parser_errors.py); the connection is closed after it.
    HEADERS_TOO_LARGE = ("HEADERS_TOO_LARGE", 431, False)
    # The body did not arrive within BFF_BODY_TIMEOUT_S, or stalled for BFF_BODY_IDLE_S
    # (edge/asgi.py BodyDeadlines); the connection is closed after it. Retrying is safe.
    REQUEST_TIMEOUT = ("REQUEST_TIMEOUT", 408, True)
    UNSUPPORTED_MEDIA_TYPE = ("UNSUPPORTED_MEDIA_TYPE", 415, False)
    MISDIRECTED_REQUEST = ("MISDIRECTED_REQUEST", 421, False)  # admin port: a foreign Host
    OVERLOADED = ("OVERLOADED", 503, True)
    SERVICE_UNAVAILABLE = ("SERVICE_UNAVAILABLE", 503, True)
    CONFLICT = ("CONFLICT", 409, False)  # an upstream refused: resource in the wrong state
    INTERNAL = ("INTERNAL", 500, True)

    @property
    def wire(self) -> str:
        return self.value[0]

    @property
    def status(self) -> int:
        return self.value[1]

    @property
    def retryable(self) -> bool:
        return self.value[2]


class ApiError(Exception):
    """Raised anywhere under a request; the app turns it into the envelope."""

    def __init__(self, code: Code, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}


_encoder = msgspec.json.Encoder()


def envelope_bytes(code: Code, message: str, request_id: str) -> bytes:
    body = ErrorBody(
        code=code.wire, message=message, request_id=request_id, retryable=code.retryable
    )
    return _encoder.encode(ErrorEnvelope(error=body))


_STATUS_CODES = {c.status: c for c in reversed(list(Code))}


def code_for_status(status: int) -> Code:
    """The closest contract code for an HTTP status raised by the framework itself."""
    if status == 400:
        return Code.VALIDATION_FAILED
    return _STATUS_CODES.get(status, Code.INTERNAL if status >= 500 else Code.VALIDATION_FAILED)


def code_for_actor_error(exc: ActorError) -> Code:
    """The API error code for a call to an actor that failed (the one place this is decided)."""
    if isinstance(exc, OverloadedError):
        return Code.OVERLOADED
    if isinstance(exc, CommandRejected):
        return Code.VALIDATION_FAILED
    if isinstance(exc, DependencyUnavailable):
        redis = exc.dependency.startswith("redis")
        return Code.CACHE_UNAVAILABLE if redis else Code.SERVICE_UNAVAILABLE
    return Code.SERVICE_UNAVAILABLE  # AskTimeout, ActorCrashed, ActorFailed: retryable
