"""The pinned demo tenants, properties and operators (API contract §7), plus fixed demo vocabulary.

Everything here is constant; :mod:`ops.sim.generate` derives the rest from a seed and today's date.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.identifiers import Role

DEMO_PASSWORD = "demo"  # noqa: S105 - the documented demo password of every demo operator
STEP_UP_CODE = "123456"
APP_VERSION_FLOOR = "1.0.0"


@dataclass(frozen=True)
class TenantSeed:
    id: str
    name: str
    status: str  # "active" | "suspended"
    locale: str


@dataclass(frozen=True)
class PropertySeed:
    id: str
    tenant_id: str
    name: str
    time_zone: str
    currency: str
    country_code: str
    floors: int
    rooms_per_floor: int
    rate_scale: int  # base rates are in minor units x this


@dataclass(frozen=True)
class OperatorSeed:
    id: str
    username: str
    tenant_id: str
    display_name: str
    role: Role
    property_ids: tuple[str, ...]


TENANTS = (
    TenantSeed("tnt-demo", "Melmastoon Demo Hotels", "active", "en-IN"),
    TenantSeed("tnt-other", "Harbourline Hospitality", "active", "en-GB"),
    TenantSeed("tnt-suspended", "Hillside Stays", "suspended", "en-US"),
)

PROPERTIES = (
    PropertySeed(
        "prop-demo-1",
        "tnt-demo",
        "Melmastoon Grand Mumbai",
        "Asia/Kolkata",
        "INR",
        "IN",
        6,
        20,
        100,
    ),
    PropertySeed(
        "prop-demo-2", "tnt-demo", "Melmastoon Marina Dubai", "Asia/Dubai", "AED", "AE", 8, 16, 4
    ),
    PropertySeed(
        "prop-other-1",
        "tnt-other",
        "Harbourline Amsterdam Centraal",
        "Europe/Amsterdam",
        "EUR",
        "NL",
        5,
        24,
        1,
    ),
    PropertySeed(
        "prop-susp-1",
        "tnt-suspended",
        "Hillside Lodge Denver",
        "America/Denver",
        "USD",
        "US",
        4,
        28,
        1,
    ),
)

OPERATORS = (
    OperatorSeed(
        "opr-fd-demo", "fd.demo", "tnt-demo", "Farah Desai", "front_desk", ("prop-demo-1",)
    ),
    OperatorSeed(
        "opr-hk-demo", "hk.demo", "tnt-demo", "Harish Kumar", "housekeeping", ("prop-demo-1",)
    ),
    OperatorSeed(
        "opr-mt-demo", "mt.demo", "tnt-demo", "Meera Thomas", "maintenance", ("prop-demo-1",)
    ),
    OperatorSeed(
        "opr-gm-demo", "gm.demo", "tnt-demo", "Gautam Mehra", "gm", ("prop-demo-1", "prop-demo-2")
    ),
    OperatorSeed(
        "opr-fd-other", "fd.other", "tnt-other", "Femke de Vries", "front_desk", ("prop-other-1",)
    ),
    OperatorSeed(
        "opr-fd-susp", "fd.susp", "tnt-suspended", "Frank Sutter", "front_desk", ("prop-susp-1",)
    ),
)

FLEET_ROLES: tuple[tuple[str, Role], ...] = (
    ("fd", "front_desk"),
    ("hk", "housekeeping"),
    ("mt", "maintenance"),
    ("gm", "gm"),
)


def fleet_seeds(
    count: int,
) -> tuple[tuple[TenantSeed, ...], tuple[PropertySeed, ...], tuple[OperatorSeed, ...]]:
    """``SIM_FLEET_TENANTS``: ``count`` more tenants for load tests (the fleet benchmark, #16),
    each with one hotel ``prop-fleet-NNN`` and an operator per role (``fd.fleet``,
    ``hk.fleet``, ``mt.fleet``, ``gm.fleet``: usernames are per tenant, like real ones)."""
    tenants, properties, operators = [], [], []
    for n in range(1, count + 1):
        tid, pid = f"tnt-fleet-{n:03d}", f"prop-fleet-{n:03d}"
        tenants.append(TenantSeed(tid, f"Fleet Hotels {n:03d}", "active", "en-GB"))
        properties.append(
            PropertySeed(pid, tid, f"Fleet Hotel {n:03d}", "UTC", "EUR", "NL", 5, 20, 1)
        )
        operators += [
            OperatorSeed(
                f"opr-{short}-fleet-{n:03d}", f"{short}.fleet", tid, f"Fleet {short}", role, (pid,)
            )
            for short, role in FLEET_ROLES
        ]
    return tuple(tenants), tuple(properties), tuple(operators)


# (code, name, max occupancy, base nightly rate in major units, share of rooms)
ROOM_TYPES = (
    ("STD", "Standard King", 2, 90, 0.40),
    ("DBL", "Double Queen", 4, 110, 0.25),
    ("DLX", "Deluxe City View", 2, 150, 0.20),
    ("ACC", "Accessible King", 2, 95, 0.05),
    ("STE", "Junior Suite", 3, 260, 0.10),
)

FIRST_NAMES = (
    "Aarav",
    "Zara",
    "Liam",
    "Noor",
    "Mateo",
    "Aisha",
    "Kenji",
    "Sofia",
    "Omar",
    "Priya",
    "Lucas",
    "Mei",
    "Yusuf",
    "Emma",
    "Ravi",
    "Chloe",
    "Hamid",
    "Ingrid",
    "Tariq",
    "Ana",
    "Daniel",
    "Fatima",
    "Hiro",
    "Leila",
    "Marco",
    "Nadia",
    "Oscar",
    "Parisa",
    "Sami",
    "Vera",
)
LAST_NAMES = (
    "Sharma",
    "Khan",
    "Müller",
    "Rossi",
    "Tanaka",
    "Haddad",
    "Novak",
    "Okafor",
    "Silva",
    "Kowalski",
    "Andersen",
    "Nguyen",
    "Farouk",
    "Dubois",
    "Iyer",
    "Costa",
    "Larsen",
    "Popescu",
    "Rahimi",
    "Yilmaz",
    "Walsh",
    "Bauer",
    "Mendes",
    "Karimi",
    "Lindqvist",
    "Patel",
    "Ozturk",
)
COUNTRIES = ("IN", "AE", "GB", "US", "DE", "FR", "JP", "NL", "IT", "AF", "SA", "SG")
SPECIAL_REQUESTS = (
    "late check-in",
    "high floor",
    "extra pillows",
    "airport pickup",
    "quiet room",
    "baby cot",
    "early check-in",
    "feather-free bedding",
    "anniversary setup",
)
STAFF_NAMES = ("Anita", "Bilal", "Carmen", "Dev", "Elif", "Faisal", "Gita", "Hugo")
