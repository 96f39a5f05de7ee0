"""The JWS compact serialisation, strictly (RFC 7515 §7.1): three base64url segments joined by
dots and nothing else, so that no JSON serialisation (whose unprotected header could add or
repeat parameters) and no non-ASCII text ever reaches the JOSE library; and whether a token is
spelled canonically.

base64url text whose length is not a multiple of 4 ends in a character with unused low bits
(RFC 4648 §3.5): an ES256 signature (64 bytes, 86 characters) has 4, so 16 spellings of one
signature decode to the same bytes and verify. A token whose use is recorded by its text must
have one spelling: :func:`is_canonical` accepts only the one whose unused bits are zero.
"""

from __future__ import annotations

import base64
import binascii
import re

_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*")


def is_compact(raw: str) -> bool:
    """Three base64url segments, the header not empty (no padding, no whitespace, ASCII
    only). An empty signature is left for the algorithm check to refuse."""
    return _COMPACT.fullmatch(raw) is not None


def is_canonical(raw: str) -> bool:
    """Compact, and every segment re-encodes to itself (no non-zero unused bits)."""
    return is_compact(raw) and all(_canonical_segment(part) for part in raw.split("."))


def _canonical_segment(segment: str) -> bool:
    if len(segment) % 4 == 1:  # 6 bits cannot end a byte
        return False
    try:
        decoded = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(decoded).rstrip(b"=").decode("ascii") == segment
