"""Schemathesis hooks of ``test_openapi_conformance.py``, loaded by the schemathesis CLI
(``SCHEMATHESIS_HOOKS``) in its own process.

The fuzzer calls the BFF as a desktop does: an enrolled device signed in at the simulator's iam
(``CONFORMANCE_SIM_URL``, user ``CONFORMANCE_USER``) sends ``Authorization: DPoP <token>`` and a
proof made for that very request right before it goes out (so a replayed or late case never
reuses a proof). Cases whose credentials the fuzzer left out or garbled on purpose keep them.
Half of the generated ids are the device's own and the demo property, so the 200 paths are
exercised and not only the 403s. A sign-out or a token refresh that worked is followed, so the
rest of the run stays signed in. ``application/x-ndjson`` bodies are read as the array of their
lines, as the document describes them. Dashboard requests take turns asking for either form.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from typing import Any

import msgspec
import schemathesis
from hypothesis import strategies as st
from schemathesis import AuthContext, Case, DeserializationContext, HookContext, Response

from ops.sim.desktop import DemoDevice
from schemas.upstream.iam import TokenResponse

BFF_URL = os.environ.get("CONFORMANCE_BFF_URL", "http://127.0.0.1:8080").rstrip("/")
SIM_URL = os.environ.get("CONFORMANCE_SIM_URL", "http://127.0.0.1:8090")
USER = os.environ.get("CONFORMANCE_USER", "fd.demo")
TENANT = os.environ.get("CONFORMANCE_TENANT", "tnt-demo")
PROPERTY = os.environ.get("CONFORMANCE_PROPERTY", "prop-demo-1")
SIGN_OUT = "/bff/backoffice/v1/auth/sign-out"
REFRESH = "/bff/backoffice/v1/auth/refresh"
DASHBOARD = "/bff/backoffice/v1/dashboard"
ACCEPTS = ("application/x-ndjson", "application/json")
LOG = os.environ.get("CONFORMANCE_LOG", "")  # one line per response: method path status type
_turns = itertools.count()
_keys = itertools.count()


class _Desktop:
    """The one signed-in device of this run (created on first use, shared by every case)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._device: DemoDevice | None = None
        self.issued: set[str] = set()  # every access and refresh token this run was given

    @property
    def device(self) -> DemoDevice:
        with self._lock:
            if self._device is None:
                device = DemoDevice(SIM_URL, TENANT, name="conformance")
                device.enroll()
                self._device = device
                self._keep(device.sign_in(USER))
            return self._device

    @property
    def tokens(self) -> TokenResponse:
        tokens = self.device.tokens
        assert tokens is not None
        return tokens

    def _keep(self, tokens: TokenResponse) -> None:
        self.issued.update((tokens.access_token, tokens.refresh_token))

    def sign_in_again(self) -> None:
        self._keep(self.device.sign_in(USER))

    def adopt(self, tokens: TokenResponse) -> None:
        self.device.tokens = tokens
        self._keep(tokens)

    def is_ours(self, authorization: object) -> bool:
        if not isinstance(authorization, str) or not authorization.startswith("DPoP "):
            return False
        return authorization.removeprefix("DPoP ") in self.issued


DESKTOP = _Desktop()


@schemathesis.auth()
class DesktopAuth:
    """``Authorization: DPoP <access token>``; the proof is made in ``before_call``."""

    def get(self, case: Case[Any], ctx: AuthContext) -> str:
        return DESKTOP.tokens.access_token

    def set(self, case: Case[Any], data: str, ctx: AuthContext) -> None:
        case.headers["Authorization"] = f"DPoP {data}"


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    headers = case.headers
    if DESKTOP.is_ours(headers.get("Authorization")):
        token = DESKTOP.tokens.access_token  # the current one, after a sign-out or a refresh
        headers["Authorization"] = f"DPoP {token}"
        if "DPoP" in headers:
            url = BFF_URL + case.formatted_path
            headers["DPoP"] = DESKTOP.device.proof(case.method, url, access_token=token)
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and key.isascii() and key.isprintable() and key.strip():
        # A desktop sends a new key per command: the fuzzer's few sound keys, reused for every
        # body it makes, would only exercise 422 IDEMPOTENCY_KEY_REUSED (edge/idempotency.py).
        headers["Idempotency-Key"] = f"{key.strip()[:100]}-{next(_keys)}"
    body = case.body
    if isinstance(body, dict) and _issued(body.get("refreshToken")):
        body["refreshToken"] = DESKTOP.tokens.refresh_token
    if case.path == DASHBOARD:  # both forms, whatever the phase
        headers["Accept"] = ACCEPTS[next(_turns) % len(ACCEPTS)]


def _issued(value: object) -> bool:
    return isinstance(value, str) and value in DESKTOP.issued


@schemathesis.hook
def after_call(context: HookContext, case: Case[Any], response: Response) -> None:
    if LOG:
        media = response.headers.get("content-type", [""])[0].split(";")[0]
        with open(LOG, "a", encoding="utf-8") as log:
            log.write(f"{case.method} {case.path} {response.status_code} {media}\n")
    if response.status_code != 200:
        return
    if case.path == SIGN_OUT:
        DESKTOP.sign_in_again()
    elif case.path == REFRESH:
        DESKTOP.adopt(msgspec.json.decode(response.content, type=TokenResponse))


@schemathesis.hook
def flatmap_path_parameters(
    context: HookContext, path_parameters: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not path_parameters or "deviceId" not in path_parameters:
        return st.just(path_parameters)
    own = {**path_parameters, "deviceId": DESKTOP.device.device_id}
    return st.sampled_from([path_parameters, own])


@schemathesis.hook
def flatmap_query(
    context: HookContext, query: dict[str, Any] | None
) -> st.SearchStrategy[dict[str, Any] | None]:
    if not query or not {"propertyId", "deviceId"} & set(query):
        return st.just(query)
    own = {**query, "propertyId": PROPERTY} if "propertyId" in query else dict(query)
    if "deviceId" in query:  # GET /sync/cursor?deviceId
        own["deviceId"] = DESKTOP.device.device_id
    return st.sampled_from([query, own])


@schemathesis.hook
def flatmap_body(context: HookContext, body: Any) -> st.SearchStrategy[Any]:
    if isinstance(body, dict) and "deviceId" in body:  # the sync routes' bodies
        return st.sampled_from([body, {**body, "deviceId": DESKTOP.device.device_id}])
    if isinstance(body, dict) and "propertyId" in body:  # mutations: past the scope check too
        return st.sampled_from([body, {**body, "propertyId": PROPERTY}])
    if not isinstance(body, dict) or "refreshToken" not in body:
        return st.just(body)
    return st.sampled_from([body, {**body, "refreshToken": DESKTOP.tokens.refresh_token}])


@schemathesis.deserializer("application/x-ndjson")
def ndjson_lines(ctx: DeserializationContext, response: Response) -> list[Any]:
    """The stream as the array of its lines (how the document describes it)."""
    return [json.loads(line) for line in response.content.splitlines() if line.strip()]
