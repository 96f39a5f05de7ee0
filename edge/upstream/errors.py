"""Upstream failures as contract errors (API contract §3), with what callers need to degrade.

==================  ===================================  =======================================
kind                when                                 code
==================  ===================================  =======================================
timeout             no answer within the attempt budget  UPSTREAM_TIMEOUT (504) on a mutation,
                                                         UPSTREAM_UNAVAILABLE (502) on a read
unavailable         5xx answer                           UPSTREAM_UNAVAILABLE (502)
connect             connection refused / reset           UPSTREAM_UNAVAILABLE (502)
circuit_open        the upstream's breaker is open       UPSTREAM_UNAVAILABLE (502)
auth                no Google ID token to send           UPSTREAM_UNAVAILABLE (502)
drift               answer fails the upstream's schema   SCHEMA_DRIFT (502)
==================  ===================================  =======================================

A 4xx answer is :class:`UpstreamRejected` (the upstream understood and said no): 404 →
NOT_FOUND, 409 → CONFLICT, others → VALIDATION_FAILED, keeping the upstream's code and message.
"""

from __future__ import annotations

from typing import Literal

from edge.errors import ApiError, Code

FailureKind = Literal["timeout", "unavailable", "connect", "circuit_open", "auth", "drift"]


class UpstreamFailure(ApiError):
    """The upstream could not give an answer we can use (dashboards degrade the widget)."""

    def __init__(
        self, upstream: str, operation: str, kind: FailureKind, detail: str, *, mutation: bool
    ) -> None:
        if kind == "drift":
            code = Code.SCHEMA_DRIFT
        elif kind == "timeout" and mutation:
            code = Code.UPSTREAM_TIMEOUT
        else:
            code = Code.UPSTREAM_UNAVAILABLE
        super().__init__(code, f"{upstream} {operation}: {detail}")
        self.upstream = upstream
        self.operation = operation
        self.kind = kind
        self.mutation = mutation


class UpstreamRejected(ApiError):
    """A 4xx answer: the request was understood and refused."""

    def __init__(
        self, upstream: str, operation: str, status: int, upstream_code: str, message: str
    ) -> None:
        code = {404: Code.NOT_FOUND, 409: Code.CONFLICT}.get(status, Code.VALIDATION_FAILED)
        super().__init__(code, message)
        self.upstream = upstream
        self.operation = operation
        self.status = status
        self.upstream_code = upstream_code
