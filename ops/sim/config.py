"""Simulator configuration from the environment (all optional; defaults suit ``./ops/stack up``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from schemas.upstream import iam


@dataclass(frozen=True)
class SimConfig:
    port: int = 8090
    seed: int = 20261121
    latency_scale: float = 1.0  # SIM_LATENCY: 0 = no artificial latency, 1 = production-like
    access_ttl_s: int = 900
    refresh_ttl_s: int = 12 * 3600
    attestation_ttl_s: int = 300
    id_token_ttl_s: int = 3600
    issuer: str = iam.ISSUER
    audience: str = iam.AUDIENCE
    public_url: str = ""  # used for DPoP htu checks; else the request's Host header
    bus: str = "auto"  # SIM_BUS: "auto" (the BFF's bus factory if present), "record" (none)
    dpop_window_s: int = 60
    fleet_tenants: int = 0  # SIM_FLEET_TENANTS: generated tenants for load tests (catalog)


def load_config(env: Mapping[str, str] | None = None) -> SimConfig:
    """Read ``PORT``, ``SIM_SEED``, ``SIM_LATENCY``, ``SIM_ACCESS_TTL_S`` … (see README)."""
    e = os.environ if env is None else env

    def get(name: str, default: str) -> str:
        return e.get(name, "") or default

    return SimConfig(
        port=int(get("PORT", "8090")),
        seed=int(get("SIM_SEED", str(SimConfig.seed))),
        latency_scale=float(get("SIM_LATENCY", "1")),
        access_ttl_s=int(get("SIM_ACCESS_TTL_S", "900")),
        refresh_ttl_s=int(get("SIM_REFRESH_TTL_S", str(12 * 3600))),
        attestation_ttl_s=int(get("SIM_ATTESTATION_TTL_S", "300")),
        id_token_ttl_s=int(get("SIM_ID_TOKEN_TTL_S", "3600")),
        issuer=get("SIM_IAM_ISSUER", iam.ISSUER),
        audience=get("SIM_IAM_AUDIENCE", iam.AUDIENCE),
        public_url=get("SIM_PUBLIC_URL", "").rstrip("/"),
        bus=get("SIM_BUS", "auto"),
        dpop_window_s=int(get("SIM_DPOP_WINDOW_S", "60")),
        fleet_tenants=int(get("SIM_FLEET_TENANTS", "0")),
    )
