"""Tunables of the actor runtime, with defaults that suit one BFF process."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActorConfig:
    """Mailbox, deadlines, passivation and supervision settings. A plain value: the edge
    builds it from its settings (``BFF_ACTOR_*``)."""

    mailbox_size: int = 64
    tell_timeout_s: float = 1.0
    ask_timeout_s: float = 5.0
    idle_timeout_s: float = 300.0
    turn_timeout_s: float = 10.0
    activation_timeout_s: float = 10.0
    deactivation_timeout_s: float = 2.0
    restart_min_s: float = 0.05
    restart_max_s: float = 5.0
    restart_jitter: float = 0.2
    max_restarts: int = 5
    restart_window_s: float = 30.0
    failed_hold_s: float = 60.0
    max_active: int = 100_000

    def __post_init__(self) -> None:
        if self.mailbox_size < 1:
            raise ValueError("mailbox_size must be >= 1 (an unbuffered mailbox cannot passivate)")
        if self.restart_min_s > self.restart_max_s:
            raise ValueError("restart_min_s must not exceed restart_max_s")
