"""The error envelope every error response uses (API contract §3)."""

from __future__ import annotations

import msgspec


class ErrorBody(msgspec.Struct, rename="camel", kw_only=True):
    code: str
    message: str
    request_id: str
    retryable: bool


class ErrorEnvelope(msgspec.Struct, kw_only=True):
    error: ErrorBody
