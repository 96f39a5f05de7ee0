"""A desktop-like client of the simulated iam-service (what the Electron app does first):
a device key, enrolment, DPoP proofs, sign-in, refresh, step-up.

Used by the tests and runnable as a demo::

    python -m ops.sim.desktop [--sim-url http://127.0.0.1:8090] [--username fd.demo]

enrols a device, signs in with the demo password and prints today's arrivals read straight
from the simulated reservation-service.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from typing import Any

import httpx
import msgspec
from jwcrypto import jwk

from edge.auth.dpop import make_proof
from ops.sim.catalog import DEMO_PASSWORD, STEP_UP_CODE
from schemas.upstream.iam import StepUpResponse, TokenResponse
from schemas.upstream.reservation import ReservationList

# What this client says it is (``X-App-Version``, API contract §2): the BFF refuses calls
# without it, or below the app-version floor, with 426 SYNC.VERSION_BLOCKED.
APP_VERSION = "1.4.0"
BFF_REFRESH_PATH = "/bff/backoffice/v1/auth/refresh"


class DemoDevice:
    """One desktop installation: its own P-256 key, enrolled once, then signed in."""

    def __init__(
        self,
        sim_url: str,
        tenant_id: str = "tnt-demo",
        name: str = "Front desk 1",
        client: httpx.Client | None = None,
    ) -> None:
        self.sim_url = sim_url.rstrip("/")
        self.tenant_id = tenant_id
        self.name = name
        self.key = jwk.JWK.generate(kty="EC", crv="P-256")
        self.http = client or httpx.Client(timeout=5.0)
        self.device_id = ""
        self.tokens: TokenResponse | None = None

    @property
    def jkt(self) -> str:
        return str(self.key.thumbprint())

    def public_jwk(self) -> dict[str, Any]:
        public: dict[str, Any] = self.key.export_public(as_dict=True)
        return public

    def proof(
        self,
        method: str,
        url: str,
        *,
        access_token: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        key: jwk.JWK | None = None,
    ) -> str:
        """A DPoP proof (RFC 9449) for ``method url``, by default signed with the device key."""
        return make_proof(
            key or self.key,
            method=method,
            url=url,
            access_token=access_token,
            iat=iat if iat is not None else time.time(),
            jti=jti or uuid.uuid4().hex,
        )

    def url(self, path: str) -> str:
        return f"{self.sim_url}{path}"

    def enroll(self) -> str:
        answer = self.http.post(
            self.url("/iam/v1/devices/enroll"),
            json={
                "tenantId": self.tenant_id,
                "deviceName": self.name,
                "publicJwk": self.public_jwk(),
            },
        )
        answer.raise_for_status()
        self.device_id = answer.json()["deviceId"]
        return self.device_id

    def sign_in_response(
        self, username: str, password: str = DEMO_PASSWORD, proof: str | None = None
    ) -> httpx.Response:
        url = self.url("/iam/v1/sessions")
        return self.http.post(
            url,
            headers={"DPoP": proof or self.proof("POST", url)},
            json={
                "tenantId": self.tenant_id,
                "deviceId": self.device_id,
                "username": username,
                "password": password,
            },
        )

    def sign_in(self, username: str, password: str = DEMO_PASSWORD) -> TokenResponse:
        answer = self.sign_in_response(username, password)
        answer.raise_for_status()
        self.tokens = msgspec.json.decode(answer.content, type=TokenResponse)
        return self.tokens

    def refresh_response(self, key: jwk.JWK | None = None) -> httpx.Response:
        assert self.tokens is not None, "sign in first"
        url = self.url("/iam/v1/sessions/refresh")
        return self.http.post(
            url,
            headers={"DPoP": self.proof("POST", url, key=key)},
            json={"refreshToken": self.tokens.refresh_token},
        )

    def refresh(self) -> TokenResponse:
        answer = self.refresh_response()
        answer.raise_for_status()
        self.tokens = msgspec.json.decode(answer.content, type=TokenResponse)
        return self.tokens

    def bff_refresh_response(
        self,
        bff_url: str,
        *,
        proof: str | None = None,
        refresh_token: str | None = None,
        send_access_token: bool = True,
        headers: dict[str, str] | None = None,
        omit: tuple[str, ...] = (),
    ) -> httpx.Response:
        """``POST {bff}/bff/backoffice/v1/auth/refresh`` as the desktop does it (API contract
        §2): a proof for that very URL (no ``ath``), the old access token if it has one (expired
        or not), ``X-App-Version``. ``headers`` override and ``omit`` drops, for tests."""
        assert self.tokens is not None, "sign in first"
        url = bff_url.rstrip("/") + BFF_REFRESH_PATH
        sent = {"DPoP": proof or self.proof("POST", url), "X-App-Version": APP_VERSION}
        if send_access_token:
            sent["Authorization"] = f"DPoP {self.tokens.access_token}"
        sent.update(headers or {})
        for name in omit:
            sent.pop(name, None)
        body = {"refreshToken": refresh_token or self.tokens.refresh_token}
        return self.http.post(url, headers=sent, json=body)

    def bff_refresh(self, bff_url: str) -> TokenResponse:
        """Refresh through the BFF and keep the new tokens (the old refresh token is spent)."""
        answer = self.bff_refresh_response(bff_url)
        answer.raise_for_status()
        self.tokens = msgspec.json.decode(answer.content, type=TokenResponse)
        return self.tokens

    def auth_headers(self, method: str, url: str) -> dict[str, str]:
        """``Authorization: DPoP <token>``, a fresh proof bound to it and ``X-App-Version``
        (what every BFF call needs; iam ignores the version)."""
        assert self.tokens is not None, "sign in first"
        token = self.tokens.access_token
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": self.proof(method, url, access_token=token),
            "X-App-Version": APP_VERSION,
        }

    def step_up_response(self, action: str, code: str = STEP_UP_CODE) -> httpx.Response:
        url = self.url("/iam/v1/step-up")
        return self.http.post(
            url, headers=self.auth_headers("POST", url), json={"action": action, "code": code}
        )

    def step_up(self, action: str, code: str = STEP_UP_CODE) -> StepUpResponse:
        answer = self.step_up_response(action, code)
        answer.raise_for_status()
        return msgspec.json.decode(answer.content, type=StepUpResponse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim-url", default=os.environ.get("SIM_URL", "http://127.0.0.1:8090"))
    parser.add_argument("--tenant", default="tnt-demo")
    parser.add_argument("--property", default="prop-demo-1")
    parser.add_argument("--username", default="fd.demo")
    parser.add_argument(
        "--curl",
        metavar="PATH",
        help="instead of reading arrivals: print a curl command for GET $BFF_URL/PATH with a"
        " fresh DPoP proof (single use, valid 60 s), e.g. --curl"
        " '/bff/backoffice/v1/dashboard?propertyId=prop-demo-1'",
    )
    parser.add_argument("--bff-url", default=os.environ.get("BFF_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--accept", default="application/x-ndjson")
    args = parser.parse_args()
    if args.curl:
        print(curl_command(args))
        return
    device = DemoDevice(args.sim_url, args.tenant, "Demo desktop")
    print(f"enrolled device {device.enroll()} (key thumbprint {device.jkt})")
    tokens = device.sign_in(args.username)
    print(
        f"signed in as {args.username}: session {tokens.session_id}, "
        f"access token valid {tokens.expires_in}s"
    )
    path = f"/reservation/v1/tenants/{args.tenant}/properties/{args.property}/arrivals"
    answer = device.http.get(device.url(path))
    answer.raise_for_status()
    arrivals = msgspec.json.decode(answer.content, type=ReservationList)
    print(f"{arrivals.total} arrivals on {arrivals.date} at {args.property}:")
    for res in arrivals.items:
        vip = "VIP" if res.guest.vip else ""
        guest = f"{res.guest.first_name} {res.guest.last_name}"
        print(
            f"  {res.confirmation_number:<14} {guest:<22} "
            f"{res.room_type:<4} room {res.room_number or '—':<5} eta {res.eta or '—':<6} "
            f"{res.nights}n {res.status:<11} {vip}"
        )


def curl_command(args: argparse.Namespace) -> str:
    """A ready-to-run curl line: enrol, sign in, then one proof for ``GET bff-url + path``."""
    device = DemoDevice(args.sim_url, args.tenant, "Demo desktop (curl)")
    device.enroll()
    device.sign_in(args.username)
    url = args.bff_url.rstrip("/") + args.curl
    headers = device.auth_headers("GET", url.split("?", 1)[0])
    stream = "/sse/stream" in args.curl
    headers["Accept"] = "text/event-stream" if stream else args.accept
    flags = " ".join(f"-H {shlex.quote(f'{k}: {v}')}" for k, v in headers.items())
    if stream and device.tokens is not None:
        print(_stream_hints(args, device.tokens.session_id), file=sys.stderr)
    return f"curl -sN {flags} {shlex.quote(url)}"


def _stream_hints(args: argparse.Namespace, session_id: str) -> str:
    """What to run in another terminal to see an alert and then a force-logout on the stream
    (stderr: stdout stays one runnable line)."""
    sim = args.sim_url.rstrip("/")
    alert = {
        "subject": "melmastoon.alert.raised.v1",
        "data": {
            "tenantId": args.tenant,
            "propertyId": args.property,
            "alertId": "al-curl-1",
            "severity": "high",
            "category": "maintenance",
            "title": "Boiler pressure low",
            "occurredAt": "2026-12-01T09:30:00Z",
        },
    }
    revoke = {"reason": "security"}
    post = "curl -s -X POST -H 'Content-Type: application/json'"
    return (
        f"# session {session_id}; in another terminal:\n"
        f"#   an alert:       {post} -d {shlex.quote(json.dumps(alert))} {sim}/_sim/events\n"
        f"#   a force-logout: {post} -d {shlex.quote(json.dumps(revoke))} "
        f"{sim}/_sim/iam/sessions/{session_id}/revoke"
    )


if __name__ == "__main__":
    main()
