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

Role = Literal["front_desk", "housekeeping", "maintenance", "fnb_manager", "gm"]
"""An operator's role (the access token's ``role`` claim; contract §2)."""

ROLES: tuple[Role, ...] = ("front_desk", "housekeeping", "maintenance", "fnb_manager", "gm")
