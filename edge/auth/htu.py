"""URI normalisation for the DPoP ``htu`` comparison (RFC 9449 §4.3 step 9; RFC 3986 §6.2).

Both sides are normalised before comparing: scheme and host lower-cased, default ports dropped,
percent-encodings upper-cased and unreserved ones decoded, dot segments removed, an empty path
made ``/``; query and fragment are not part of ``htu``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


class InvalidUri(ValueError):
    """Not an absolute http(s) URI."""


@lru_cache(maxsize=4096)  # a device proves the same few URLs over and over
def normalize_htu(uri: str) -> str:
    """The comparable form of ``uri`` without its query and fragment."""
    if len(uri) > 2048 or not (uri.isascii() and uri.isprintable()) or " " in uri:
        raise InvalidUri("htu must be printable ASCII without spaces, at most 2048 characters")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise InvalidUri(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise InvalidUri("htu must be an absolute http(s) URI")
    if parts.username is not None or parts.password is not None:
        raise InvalidUri("htu must not carry credentials")
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(_normalize_percent(parts.path)) or "/"
    return f"{scheme}://{authority}{path}"


def _normalize_percent(text: str) -> str:
    def fix(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in _UNRESERVED else f"%{match[1].upper()}"

    return _PERCENT.sub(fix, text)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if len(output) > 1:
                output.pop()
        elif segment != ".":
            output.append(segment)
    result = "/".join(output)
    if path.endswith(("/.", "/..")):
        result += "/"
    return result
