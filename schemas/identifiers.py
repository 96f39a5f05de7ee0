"""The identifier and role types every layer shares: one pattern, one ``Role``.

Identifiers end up in Redis keys, ledger stream names and bus channel names, so they are
restricted to a safe alphabet (no ``*``, spaces, slashes or braces) and bounded in length.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_.:@-]+$"

Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=IDENTIFIER_PATTERN)]
"""A tenant, device, property, operator, session or event id as it appears on the wire."""

PLAIN_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]*$"
"""Free text a client sends that is kept (ledger rows are ``jsonb``, which refuses ``\u0000``;
a lone surrogate has no UTF-8 form): no C0 control but tab and line breaks, no DEL, no lone
surrogate. Refused as ``VALIDATION_FAILED`` naming the field, never a failed write."""

Role = Literal["front_desk", "housekeeping", "maintenance", "fnb_manager", "gm"]
"""An operator's role (the access token's ``role`` claim; contract §2)."""

ROLES: tuple[Role, ...] = ("front_desk", "housekeeping", "maintenance", "fnb_manager", "gm")
