"""DPoP proofs at the simulated iam-service: the BFF's own RFC 9449 checks
(:mod:`edge.auth.dpop`) plus a process-local ``jti`` replay cache, as a real iam would keep."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from edge.auth.dpop import DpopInvalid
from edge.auth.dpop import verify_proof as check_proof
from edge.auth.htu import normalize_htu

MAX_REPLAY_ENTRIES = 100_000


class DpopError(Exception):
    """The proof is not acceptable; the message says why (never echoes secrets)."""


@dataclass(frozen=True)
class Proof:
    jkt: str  # RFC 7638 SHA-256 thumbprint of the proof key
    jti: str


class ReplayCache:
    """jti values seen within the acceptance window (scoped to the target URI, per §11.1)."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def add_once(self, htu: str, jti: str, keep_until: float) -> bool:
        now = time.time()
        if len(self._seen) >= MAX_REPLAY_ENTRIES:
            for k in [k for k, t in self._seen.items() if t < now]:
                del self._seen[k]
            if len(self._seen) >= MAX_REPLAY_ENTRIES:
                return False  # fail closed rather than forget
        key = hashlib.sha256(f"{htu}\n{jti}".encode()).hexdigest()
        if self._seen.get(key, 0) >= now:
            return False
        self._seen[key] = keep_until
        return True

    def clear(self) -> None:
        self._seen.clear()


def verify_proof(
    raw: str | None,
    *,
    method: str,
    url: str,
    replay: ReplayCache,
    window_s: int,
    access_token: str | None = None,
) -> Proof:
    """Check one ``DPoP`` header value for a request to ``method url`` (the BFF's own checks,
    :func:`edge.auth.dpop.verify_proof`), then its ``jti`` against this iam's replay cache."""
    if not raw:
        raise DpopError("DPoP proof missing")
    try:
        proof = check_proof(
            raw,
            method=method,
            url=url,
            access_token=access_token,
            now=time.time(),
            max_age_s=window_s,
            max_future_s=window_s,
        )
    except DpopInvalid as exc:
        raise DpopError(f"DPoP proof invalid: {exc}") from None
    if not replay.add_once(normalize_htu(url), proof.jti, time.time() + 2 * window_s):
        raise DpopError("DPoP proof replayed")
    return Proof(jkt=proof.jkt, jti=proof.jti)
