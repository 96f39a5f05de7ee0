"""Shapes every upstream shares: the error envelope and the base Struct options."""

from __future__ import annotations

import msgspec


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every upstream payload: camelCase on the wire, keyword-only construction."""


class UpstreamErrorBody(Wire):
    code: str
    message: str


class UpstreamErrorEnvelope(Wire):
    """Body of every non-2xx upstream answer."""

    error: UpstreamErrorBody
