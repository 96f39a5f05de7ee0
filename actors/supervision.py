"""Restart policy of a supervisor: exponential backoff with jitter, and a restart budget.

Like Akka's ``restartWithBackoff(min, max, randomFactor)`` plus ``withLimit(n, window)``: a
crash inside the budget is followed by a restart after a growing delay; more than
``max_restarts`` crashes within ``window`` seconds means the failure is not transient, so the
supervisor gives up (escalates) instead of restarting forever.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field


@dataclass
class RestartBudget:
    """Counts crashes in a sliding window and says how long to wait before the next restart."""

    max_restarts: int
    window_s: float
    min_backoff_s: float
    max_backoff_s: float
    jitter: float
    rng: random.Random = field(default_factory=random.Random)
    _crashes: deque[float] = field(default_factory=deque)

    def record_crash(self, now: float) -> bool:
        """Note a crash at ``now``; ``False`` when the budget is exhausted (escalate)."""
        self._crashes.append(now)
        while self._crashes and self._crashes[0] <= now - self.window_s:
            self._crashes.popleft()
        return len(self._crashes) <= self.max_restarts

    @property
    def recent(self) -> int:
        """Crashes inside the current window (1 after the first crash)."""
        return len(self._crashes)

    def backoff(self) -> float:
        """Delay before the next restart: ``min * 2**(recent-1)`` capped at ``max``, plus jitter."""
        exponent = max(self.recent - 1, 0)
        base = min(self.max_backoff_s, self.min_backoff_s * (2.0**exponent))
        return base * (1.0 + self.jitter * self.rng.random())
