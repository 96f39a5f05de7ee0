"""What callers of the actor runtime catch, and what the HTTP edge maps to error codes
(``edge.errors.code_for_actor_error``).

The distinctions matter to callers: :class:`OverloadedError` means the message was never
enqueued (safe to retry, maps to 503 OVERLOADED); :class:`AskTimeout` means it was enqueued but
no reply came in time (outcome unknown: retry with the same idempotency key);
:class:`ActorCrashed` means the actor died while handling it (same ambiguity);
:class:`CommandRejected` is a definite, domain-level "no" (nothing was recorded).
"""

from __future__ import annotations

from actors.address import ActorAddress


class ActorError(Exception):
    """Base of every error the runtime raises to callers."""

    def __init__(self, address: ActorAddress, message: str) -> None:
        super().__init__(f"{address}: {message}")
        self.address = address


class OverloadedError(ActorError):
    """The mailbox stayed full until the sender's deadline; the message was not enqueued."""

    def __init__(
        self, address: ActorAddress, depth: int, timeout: float, reason: str | None = None
    ) -> None:
        super().__init__(address, reason or f"mailbox full ({depth} queued) for {timeout:.3g}s")
        self.depth = depth


class AskTimeout(ActorError):
    """The request was enqueued but no reply arrived before the deadline (outcome unknown)."""

    def __init__(self, address: ActorAddress, timeout: float) -> None:
        super().__init__(address, f"no reply within {timeout:.3g}s")


class ActorCrashed(ActorError):
    """The actor failed (or was killed) while handling this request (outcome unknown)."""


class ActorFailed(ActorError):
    """The actor's supervisor gave up (restart budget exhausted); it takes no messages."""


class Refused(ActorError):
    """Raised by an actor's handler to answer "no" without crashing; nothing was recorded."""


class CommandRejected(Refused):
    """The actor refused the command for a domain reason."""


class Contended(Refused):
    """The actor's stream kept moving under it — another instance (or worker) was writing the
    same aggregate at the same moment — past every retry: nothing was recorded, the actor stays
    up, the caller may retry. Never counts as a crash."""


class DependencyUnavailable(Refused):
    """A dependency the message needs (Postgres, a Redis tier) did not answer: nothing was
    decided, the actor stays up, the caller may retry later. Never counts as a crash."""

    def __init__(self, address: ActorAddress, message: str, *, dependency: str = "") -> None:
        super().__init__(address, message)
        self.dependency = dependency


class UnknownKind(ValueError):
    """No actor kind with that name is registered."""


class WrongMessage(TypeError):
    """The message is not one the addressed kind accepts."""


class SystemNotRunning(RuntimeError):
    """``tell``/``ask`` before :meth:`ActorSystem.run` started or after it stopped."""
