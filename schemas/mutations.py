"""The domain mutations and lock actions of API contract §9: request bodies and responses.

Bodies are strict (an unknown field is VALIDATION_FAILED naming it: a mistyped field of a
charge must not be dropped silently) and bounded. Enumerations are the upstreams' own
(``to`` of a task or work order, a charge ``code``), so an unknown value is refused by the BFF
before anything is attempted. Responses are the resulting resource as the upstream answered it
(``Reservation``, ``Folio``, ``HousekeepingTask``, ``WorkOrder``); the lock actions answer the
keys issued or revoked.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.identifiers import PLAIN_TEXT_PATTERN, Identifier
from schemas.upstream.billing import ChargeCode, Folio
from schemas.upstream.housekeeping import HousekeepingTask, TaskStatus
from schemas.upstream.lock import LockKey
from schemas.upstream.maintenance import WorkOrder, WorkOrderStatus
from schemas.upstream.reservation import Reservation

__all__ = [
    "ChargeBody",
    "CheckInBody",
    "CheckOutBody",
    "Folio",
    "HousekeepingTask",
    "IssueKeyBody",
    "KeyIssued",
    "KeysRevoked",
    "RefundBody",
    "Reservation",
    "RevokeKeyBody",
    "TaskTransitionBody",
    "WorkOrder",
    "WorkOrderTransitionBody",
]

Currency = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]
AmountMinor = Annotated[
    int, msgspec.Meta(gt=0, le=100_000_000, description="In the currency's minor unit")
]
Line = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=PLAIN_TEXT_PATTERN)]
Note = Annotated[str, msgspec.Meta(max_length=500, pattern=PLAIN_TEXT_PATTERN)]


class _Body(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    property_id: Identifier


class CheckInBody(_Body):
    """``roomId``: a room of the reservation's type; absent, reservation-service picks one."""

    room_id: Identifier | None = None


class CheckOutBody(_Body):
    pass


class ChargeBody(_Body):
    """``currency`` must be the folio's (checked before anything is charged)."""

    amount_minor: AmountMinor
    currency: Currency
    description: Line
    code: ChargeCode = "MISC"


class RefundBody(_Body):
    """``currency`` must be the folio's (checked before anything is refunded)."""

    amount_minor: AmountMinor
    currency: Currency
    reason: Line


class TaskTransitionBody(_Body):
    to: TaskStatus
    assignee_id: Identifier | None = None
    note: Note | None = None


class WorkOrderTransitionBody(_Body):
    to: WorkOrderStatus
    assignee_id: Identifier | None = None
    note: Note | None = None


class IssueKeyBody(_Body):
    key_count: Annotated[int, msgspec.Meta(ge=1, le=4)] = 1
    encoder_id: Identifier | None = None


class RevokeKeyBody(_Body):
    """lock-integration revokes every active key of the reservation (a lost card means the
    room's other cards go too); ``keyId`` names the key the operator reported, for the audit,
    and the answer says whether it was among those revoked."""

    key_id: Identifier | None = None
    reason: Line = "revoked at the front desk"


class KeyIssued(msgspec.Struct, kw_only=True, rename="camel"):
    """``keyId``: the first key issued (``keys`` has all of them)."""

    reservation_id: str
    property_id: str
    key_id: str
    keys: list[LockKey]


class KeysRevoked(msgspec.Struct, kw_only=True, rename="camel"):
    """``keyId``: the key the request named, if any; ``keyRevoked``: whether it is among
    ``revoked`` (the keys that were active until now)."""

    reservation_id: str
    property_id: str
    revoked: list[LockKey]
    key_id: str | None = None
    key_revoked: bool | None = None


# The resources the other mutations answer with (as their upstream gave them).
ReservationResult = Reservation
FolioResult = Folio
TaskResult = HousekeepingTask
WorkOrderResult = WorkOrder
