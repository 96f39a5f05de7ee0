"""``verify``: run the ledger's invariant checks and print a report; exit 1 on any problem."""

from __future__ import annotations

import argparse
import sys
from typing import IO

import msgspec

from ledger.audit import Report, verify
from ledger.database import Database


def render(report: Report) -> str:
    lines = [
        f"ledger head {report.head}, pruned through {report.pruned_through},"
        f" {report.rows} rows in {report.streams} streams",
        "relay cursors: " + (", ".join(f"{n}={p}" for n, p in report.relay.items()) or "none"),
    ]
    for audit in report.audits:
        lines.append(
            f"{audit.check} audit: {audit.attempts} attempts, {audit.unfinished} without an"
            f" outcome (completeness {audit.completeness:.2%})"
        )
    if report.ok:
        lines.append(
            "OK: positions gap-free, versions dense, relay caught up, every attempt has its outcome"
        )
    else:
        lines.append(f"FAILED: {len(report.problems)} problem(s)")
        lines.extend(f"  [{p.check}] {p.detail}" for p in report.problems)
    return "\n".join(lines)


async def run_verify(db: Database, args: argparse.Namespace, out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    report = await verify(db, max_lag_s=args.max_lag_s, attempt_grace_s=args.attempt_grace_s)
    if args.json:
        out.write(msgspec.json.encode({"ok": report.ok, **msgspec.to_builtins(report)}).decode())
        out.write("\n")
    else:
        out.write(render(report) + "\n")
    return 0 if report.ok else 1
