"""Rejections made by hypercorn's HTTP/1.1 parser, before there is a request for the app,
answered with the contract's error envelope.

When h11 cannot read a request head (a raw ``\\xff`` in the path, a malformed header line, a
head still incomplete past ``h11_max_incomplete_size``), hypercorn answers from its protocol
object (``H11Protocol._send_error_response``) with an empty body — no envelope, no
``X-Request-Id`` — and closes the connection; the ASGI app never runs, so no middleware can
help. hypercorn has no hook for this answer, so :func:`install` replaces the protocol class its
connection wrapper builds (``hypercorn.protocol.H11Protocol``) with a subclass whose error answer
is the envelope: 431 ``HEADERS_TOO_LARGE`` for an oversized head, 400 ``VALIDATION_FAILED`` for
anything else it cannot parse (h11's 501 for an unsupported ``Transfer-Encoding`` included),
always with ``Connection: close``. The head was not read, so the client's ``X-Request-Id`` is
unknown: the answer carries a new one. ``tests/edge/http/test_server_limits.py`` fails if a
hypercorn upgrade changes this seam.

HTTP/2 (h2c or prior knowledge) has no such answer to give: an over-long header list or a
malformed head is a stream reset or a GOAWAY frame, not a response.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import h11
import hypercorn.protocol
from hypercorn.protocol.h11 import H11Protocol

from edge.errors import Code, envelope_bytes

log = logging.getLogger("bff.access")

_MESSAGES = {
    Code.HEADERS_TOO_LARGE: "request line and headers too large",
    Code.VALIDATION_FAILED: "malformed HTTP request",
}


class EnvelopeH11Protocol(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, answering what its parser refuses with the envelope."""

    async def _send_error_response(self, status_code: int) -> None:
        code = Code.HEADERS_TOO_LARGE if status_code == 431 else Code.VALIDATION_FAILED
        request_id = uuid.uuid4().hex
        body = envelope_bytes(code, _MESSAGES[code], request_id)
        log.info(
            "request refused by the HTTP parser",
            extra={"requestId": request_id, "status": code.status, "parserStatus": status_code},
        )
        headers: list[tuple[bytes, bytes]] = [
            (b"content-type", b"application/json; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", request_id.encode()),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=code.status, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


def install() -> None:
    """Make every hypercorn server of this process (the public and the admin one) answer parser
    rejections with the envelope. Idempotent."""
    module: Any = hypercorn.protocol
    module.H11Protocol = EnvelopeH11Protocol
