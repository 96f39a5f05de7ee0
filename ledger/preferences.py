"""The OperatorPreferences mirror in Postgres: tenant-service's copy of each operator's
preferences, keyboard-shortcut overrides included, one row per (tenant, operator).

The mirror is written only with what tenant-service answered (a write it accepted, or a read),
never with what a desktop merely asked for, so it can lag tenant-service but never disagree with
it (FAILURE_MODES F-36). Two writers racing (two devices, two instances) cannot move a row back:
an older ``version`` is ignored, the same version only refreshes ``synced_at``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ledger.database import Database
from schemas.preferences import MirroredPreferences

_UPSERT = """
INSERT INTO operator_preferences AS p
    (tenant, operator_id, layout, density, columns, shortcuts, version, updated_at, synced_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7, $8, $9)
ON CONFLICT (tenant, operator_id) DO UPDATE SET
    layout = CASE WHEN excluded.version > p.version THEN excluded.layout ELSE p.layout END,
    density = CASE WHEN excluded.version > p.version THEN excluded.density ELSE p.density END,
    columns = CASE WHEN excluded.version > p.version THEN excluded.columns ELSE p.columns END,
    shortcuts = CASE WHEN excluded.version > p.version THEN excluded.shortcuts
        ELSE p.shortcuts END,
    updated_at = CASE WHEN excluded.version > p.version THEN excluded.updated_at
        ELSE p.updated_at END,
    synced_at = CASE WHEN excluded.version >= p.version
        THEN greatest(p.synced_at, excluded.synced_at) ELSE p.synced_at END,
    version = greatest(p.version, excluded.version)
RETURNING tenant, operator_id, layout, density, columns::text AS columns,
    shortcuts::text AS shortcuts, version, updated_at, synced_at
"""

_SELECT = """
SELECT tenant, operator_id, layout, density, columns::text AS columns,
    shortcuts::text AS shortcuts, version, updated_at, synced_at
FROM operator_preferences WHERE tenant = $1 AND operator_id = $2
"""

_encoder = msgspec.json.Encoder()
_columns = msgspec.json.Decoder(dict[str, list[str]])
_shortcuts = msgspec.json.Decoder(dict[str, str])


class PreferencesMirror:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, tenant: str, operator_id: str) -> MirroredPreferences | None:
        """The mirrored copy, ``None`` when the BFF never had one; raises
        ``DatabaseUnavailable``."""
        row = await self._db.fetchrow_once(_SELECT, tenant, operator_id)
        return None if row is None else _mirrored(row)

    async def put(self, prefs: MirroredPreferences) -> MirroredPreferences:
        """Store tenant-service's copy unless the mirror already holds a newer version; returns
        what the mirror holds now. Raises ``DatabaseUnavailable``."""
        row = await self._db.fetchrow_once(
            _UPSERT,
            prefs.tenant,
            prefs.operator_id,
            prefs.layout,
            prefs.density,
            _encoder.encode(prefs.columns).decode(),
            _encoder.encode(prefs.shortcuts).decode(),
            prefs.version,
            prefs.updated_at,
            prefs.synced_at,
        )
        assert row is not None
        return _mirrored(row)


def _mirrored(row: Any) -> MirroredPreferences:
    return MirroredPreferences(
        tenant=row["tenant"],
        operator_id=row["operator_id"],
        layout=row["layout"],
        density=row["density"],
        columns=_columns.decode(row["columns"]),
        shortcuts=_shortcuts.decode(row["shortcuts"]),
        version=row["version"],
        updated_at=row["updated_at"],
        synced_at=row["synced_at"],
    )
