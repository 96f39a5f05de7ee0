"""How ``./ops/bus dead-letters`` prints: a table for people, JSON lines for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from edge.bus.dead_letters import DeadLetter, ReplayReport

_COLUMNS = ("id", "parked", "topic", "subject", "eventId", "attempt", "instance", "reason")


def _row(letter: DeadLetter) -> dict[str, str]:
    return {
        "id": letter.id,
        "parked": datetime.fromtimestamp(letter.parked_at, UTC).isoformat(timespec="seconds"),
        "topic": letter.topic,
        "subject": letter.attributes.get("subject", ""),
        "eventId": letter.attributes.get("eventId", ""),
        "attempt": str(letter.attempt),
        "instance": letter.instance,
        "reason": letter.reason,
    }


def render_table(letters: Sequence[DeadLetter]) -> str:
    if not letters:
        return "no dead letters"
    rows = [_row(d) for d in letters]
    widths = {c: min(60, max(len(c), *(len(r[c]) for r in rows))) for c in _COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in _COLUMNS)]
    lines.extend("  ".join(r[c][: widths[c]].ljust(widths[c]) for c in _COLUMNS) for r in rows)
    return "\n".join(line.rstrip() for line in lines)


def _json(letter: DeadLetter) -> str:
    record = {
        **_row(letter),
        "messageId": letter.message_id,
        "attributes": letter.attributes,
        "data": letter.data.decode(errors="replace"),
    }
    return msgspec.json.encode(record).decode()


def render_json(letters: Sequence[DeadLetter]) -> str:
    return "\n".join(_json(d) for d in letters)


def render_replay(report: ReplayReport, *, dry_run: bool, as_json: bool) -> str:
    if as_json:
        summary = {
            "dryRun": dry_run,
            "replayed": [_row(d) for d in report.replayed],
            "removed": 0 if dry_run else report.removed,
            "missing": report.missing,
        }
        return msgspec.json.encode(summary).decode()
    verb = "would replay" if dry_run else "replayed"
    lines = [f"{verb} {d.id}: {d.topic} {d.attributes.get('subject', '')}" for d in report.replayed]
    gone = "would remove" if dry_run else "removed"
    lines.append(
        f"{verb} {len(report.replayed)} message(s); {gone} {report.removed} dead letter(s)"
    )
    lines.extend(f"not found: {missing}" for missing in report.missing)
    return "\n".join(lines)
