"""Decoding untrusted input, in one place: request bodies, query strings and path parameters,
and the JSON inside DPoP proofs and access tokens.

msgspec raises ``DecodeError``/``ValidationError`` for most bad input, but not for all of it:
arrays or objects nested ~1,000 deep recurse until ``RecursionError``, and invalid UTF-8 inside a
string is a ``UnicodeDecodeError`` — both used to escape as a 500. Here every failure is one
exception, :class:`Malformed`, naming where it failed (a field, or ``body``/``query``), and two
checks run before msgspec sees the bytes:

* they must be UTF-8 (RFC 8259 §8.1), anywhere in the document, not only in the fields a type
  happens to read;
* arrays and objects may nest at most ``MAX_DEPTH`` deep, outside strings (a cheap scan of the
  bytes; every schema of ours is shallow). The scan never counts less deep than a parser
  recurses before it meets an error, so no input reaches msgspec's recursion limit.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any, TypeVar, overload

import msgspec

T = TypeVar("T")

MAX_DEPTH = 32

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKET = bytes(sorted(set(range(256)) - set(b"[]{}")))
_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1, +1, -1, -1 as signed bytes


class Malformed(ValueError):
    """Input that does not decode into what was asked for; ``field`` says where."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


def nesting_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in the JSON text ``raw``, not counting brackets inside
    strings. For malformed text, at least the depth a parser reaches before the error (an
    unterminated string counts the brackets after it)."""
    if raw.count(b"[") + raw.count(b"{") <= 1:
        return raw.count(b"[") + raw.count(b"{")
    if b'"' in raw:
        raw = _STRING.sub(b"", _ESCAPE.sub(b"", raw))
    steps = memoryview(raw.translate(_STEP, _NOT_BRACKET)).cast("b")
    return max(accumulate(steps), default=0)


def check_json_text(raw: bytes, *, where: str = "body", max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`Malformed` unless ``raw`` is UTF-8 nested at most ``max_depth`` deep."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(where, f"not UTF-8 (byte {exc.start})") from None
    if raw.count(b"[") + raw.count(b"{") > max_depth and nesting_depth(raw) > max_depth:
        raise Malformed(where, f"nested deeper than {max_depth} levels")


@overload
def decode_json(raw: bytes | str, type: type[T], *, where: str = "body") -> T: ...


@overload
def decode_json(raw: bytes | str, type: Any = Any, *, where: str = "body") -> Any: ...


def decode_json(raw: bytes | str, type: Any = Any, *, where: str = "body") -> Any:
    """``raw`` (JSON) decoded into ``type``; :class:`Malformed` naming the failing field (or
    ``where`` for the document as a whole) on any failure."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as exc:  # a lone surrogate
            raise Malformed(where, f"not UTF-8 (character {exc.start})") from None
    check_json_text(raw, where=where)
    try:
        return msgspec.json.decode(raw, type=type)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, where) from None
    except (msgspec.DecodeError, RecursionError, ValueError, OverflowError) as exc:
        raise Malformed(where, str(exc)) from None


def convert(value: Any, type: type[T], *, strict: bool = True, where: str = "query") -> T:
    """``msgspec.convert`` (strings coerced to the field types unless ``strict``), with the same
    failures as :func:`decode_json`."""
    try:
        return msgspec.convert(value, type, strict=strict)
    except msgspec.ValidationError as exc:
        raise _invalid(exc, where) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as exc:
        raise Malformed(where, str(exc)) from None


def _invalid(exc: msgspec.ValidationError, where: str) -> Malformed:
    """msgspec's message with its JSON path as a field name (``… - at `$.a.b``` → ``a.b``)."""
    detail, _, path = str(exc).partition(" - at `$")
    field = path.rstrip("`").lstrip(".")
    return Malformed(field or where, detail)
