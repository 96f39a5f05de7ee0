"""``./ops/chaos drill``: run the chosen drills in row order and print one table."""

from __future__ import annotations

import sys

from ops.drills.catalogue import NOT_REPRODUCIBLE, drills
from ops.drills.framework import Drill, Outcome, Stack, row_key, run_drill


def choose(rows: list[str], *, all_rows: bool, ci: bool) -> list[Drill]:
    known = {d.row: d for d in drills()}
    if all_rows:
        return list(known.values())
    if ci:
        return [d for d in known.values() if d.ci]
    unknown = [r for r in rows if r not in known]
    if unknown:
        raise SystemExit(f"no drill for {', '.join(unknown)} (./ops/chaos drill --list)")
    return sorted((known[r] for r in rows), key=lambda d: row_key(d.row))


def run_drills(rows: list[str], *, all_rows: bool, ci: bool, list_rows: bool) -> int:
    if list_rows:
        for d in drills():
            print(f"{d.row:6} {'ci ' if d.ci else '   '}{d.title}")
        for row, why in sorted(NOT_REPRODUCIBLE.items(), key=lambda item: row_key(item[0])):
            print(f"{row:6} -  not reproducible here: {why}")
        return 0
    chosen = choose(rows, all_rows=all_rows, ci=ci)
    if not chosen:
        print("nothing to drill: name rows, --all or --ci", file=sys.stderr)
        return 2
    stack = Stack.from_env()
    outcomes = []
    for spec in chosen:
        print(f"--- {spec.row}: {spec.title}", flush=True)
        outcome = run_drill(spec, stack)
        for line in outcome.evidence:
            print(f"    {line}")
        print(f"    {'PASS' if outcome.passed else 'FAIL'} in {outcome.seconds:.1f}s", flush=True)
        outcomes.append(outcome)
    print_table(outcomes, listed_unreproducible=all_rows)
    return 0 if all(o.passed for o in outcomes) else 1


def print_table(outcomes: list[Outcome], *, listed_unreproducible: bool) -> None:
    print()
    print(f"{'row':6} {'result':6} {'time':>7}  drill")
    for o in outcomes:
        print(f"{o.row:6} {'PASS' if o.passed else 'FAIL':6} {o.seconds:6.1f}s  {o.title}")
    if listed_unreproducible:
        for row in sorted(NOT_REPRODUCIBLE, key=row_key):
            print(f"{row:6} {'n/a':6} {'':>7}  not reproducible on one machine (--list says why)")
    passed = sum(o.passed for o in outcomes)
    print(f"{passed}/{len(outcomes)} drills passed")
