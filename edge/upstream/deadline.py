"""Deadline propagation: the caller's deadline caps every upstream attempt under it.

The "request's own deadline" is Trio's effective deadline: whatever ``trio.move_on_after`` /
``fail_after`` scopes enclose the call (the request budget, a dashboard widget's slot). An
attempt gets ``min(policy timeout, time left - margin)``; the margin lets the client's own,
inner scope fire first so the caller gets a typed upstream error rather than a bare cancel.
"""

from __future__ import annotations

import math

import trio

MARGIN_S = 0.005  # the client's scope fires this much before the caller's
MIN_ATTEMPT_S = 0.02  # below this an attempt cannot succeed: do not start it


def time_left() -> float:
    """Seconds until the caller's deadline (``inf`` when there is none)."""
    deadline = trio.current_effective_deadline()
    return math.inf if deadline == math.inf else deadline - trio.current_time()


def attempt_budget(policy_timeout_s: float) -> tuple[float, bool]:
    """(seconds for the next attempt, whether the caller's deadline cut it below the policy)."""
    left = time_left() - MARGIN_S
    if left < policy_timeout_s:
        return max(0.0, left), True
    return policy_timeout_s, False
