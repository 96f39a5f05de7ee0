"""``kill-actors``: kill live actors through the admin endpoint, once or every S seconds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from ops.drills.admin_client import AdminClient


def selection(
    *, kind: str | None, tenant: str | None, count: int | None, ids: list[str] | None, all_: bool
) -> dict[str, Any]:
    chosen: dict[str, Any] = {"kind": kind, "tenant": tenant, "count": count, "ids": ids}
    chosen = {k: v for k, v in chosen.items() if v}
    if all_:
        chosen["all"] = True
    return chosen


async def kill_rounds(
    client: AdminClient,
    chosen: dict[str, Any],
    *,
    every: float | None,
    duration: float | None,
    out: Callable[[str], None] = print,
) -> int:
    """Kill once, or every ``every`` seconds for ``duration`` seconds; returns the total killed."""
    total = 0
    start = trio.current_time()
    round_no = 0
    while True:
        round_no += 1
        killed = await client.kill(chosen)
        for actor in killed:
            out(f"killed {actor['kind']}/{actor['tenant']}/{actor['id']}")
        out(f"round {round_no}: killed {len(killed)} actor(s)")
        total += len(killed)
        if every is None or duration is None:
            return total
        next_round = start + round_no * every
        if next_round > start + duration:
            return total
        await trio.sleep_until(next_round)
