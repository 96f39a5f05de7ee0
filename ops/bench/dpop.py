"""DPoP proof verification per request (issue #14): the service's path (``verify_proof``: an
ES256 proof checked with ``cryptography`` directly, its header checked once per device) against
the baseline in the same run, the same proofs through jwcrypto's ``JWS`` (how every proof was
verified before #14, and still how any other algorithm is).

    .venv/bin/python -m ops.bench.dpop [--proofs 3000] [--devices 50]

Prints p50/p95/p99 of one verification, verifications per second and CPU per verification
(``time.process_time``), and the ratio of the service's figures to the baseline's. Every proof
is fresh (its own ``jti``), signed before the clock starts, by one of ``--devices`` keys.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

from jwcrypto import jwk

from edge.auth import dpop
from edge.decoding import decode_json

URL = "https://backoffice.example/bff/backoffice/v1/devices/dev-1/heartbeat"
TOKEN = "eyJhbGciOiJFUzI1NiJ9.e30.c2ln"  # noqa: S105 - a made-up access token for ath


def _proofs(count: int, devices: int) -> list[str]:
    keys = [jwk.JWK.generate(kty="EC", crv="P-256") for _ in range(devices)]
    now = time.time()
    return [
        dpop.make_proof(
            keys[i % devices],
            method="POST",
            url=URL,
            access_token=TOKEN,
            iat=now,
            jti=uuid.uuid4().hex,
        )
        for i in range(count)
    ]


def service_path(proof: str) -> None:
    dpop.verify_proof(proof, method="POST", url=URL, access_token=TOKEN, now=time.time())


def jwcrypto_path(proof: str) -> None:
    """The same checks with the signature through jwcrypto (the path before #14)."""
    _, payload = dpop._verify_with_jwcrypto(proof)
    claims = decode_json(payload, dpop.ProofClaims, where="claims")
    dpop._check_claims(claims, "POST", URL, TOKEN, time.time(), 60.0, 5.0)


def measure(verify: Callable[[str], None], proofs: list[str]) -> dict[str, float]:
    for proof in proofs[:100]:  # warm: key imports, header and URL caches
        verify(proof)
    walls = []
    cpu = time.process_time()
    for proof in proofs:
        started = time.perf_counter()
        verify(proof)
        walls.append(time.perf_counter() - started)
    spent = time.process_time() - cpu
    quantiles = statistics.quantiles(walls, n=100)
    return {
        "p50": quantiles[49] * 1e6,
        "p95": quantiles[94] * 1e6,
        "p99": quantiles[98] * 1e6,
        "per_s": len(walls) / sum(walls),
        "cpu": spent / len(walls) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.dpop", description=__doc__)
    parser.add_argument("--proofs", type=int, default=3000)
    parser.add_argument("--devices", type=int, default=50)
    args = parser.parse_args()
    proofs = _proofs(args.proofs, args.devices)
    base = measure(jwcrypto_path, proofs)
    fast = measure(service_path, proofs)
    print(f"{args.proofs} proofs from {args.devices} device keys, ES256")
    print()
    print("| path | p50 µs | p95 µs | p99 µs | verifications/s | CPU µs each | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, row in (("jwcrypto JWS (baseline)", base), ("verify_proof (service)", fast)):
        print(
            f"| {name} | {row['p50']:.0f} | {row['p95']:.0f} | {row['p99']:.0f} | "
            f"{row['per_s']:,.0f} | {row['cpu']:.0f} | {row['cpu'] / base['cpu']:.2f} |"
        )


if __name__ == "__main__":
    main()
