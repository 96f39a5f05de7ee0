"""A desktop-like client that uses only the contract: enrol and sign in at the simulator's iam,
then call the BFF with ``Authorization: DPoP`` and a fresh proof per request."""

from __future__ import annotations

from typing import Any

import httpx

from ops.sim.desktop import APP_VERSION, DemoDevice
from schemas.upstream.iam import TokenResponse

__all__ = ["APP_VERSION", "Desktop"]


class Desktop:
    def __init__(
        self,
        bff_url: str,
        sim_url: str,
        username: str = "fd.demo",
        tenant: str = "tnt-demo",
        *,
        device: DemoDevice | None = None,
        sign_in: bool = True,
        public_url: str | None = None,
    ) -> None:
        """``sign_in=False`` with a signed-in ``device``: the same session, e.g. on another
        instance. ``public_url``: the URL proofs name (``htu``) when requests go straight to
        one instance behind a balancer (the service checks ``htu`` against its public URL)."""
        self.bff_url = bff_url.rstrip("/")
        self._public_url = public_url.rstrip("/") if public_url else None
        self.device = device or DemoDevice(sim_url, tenant)
        if not self.device.device_id:
            self.device.enroll()
        if sign_in or self.device.tokens is None:
            self.device.sign_in(username)
        self.http = httpx.Client(base_url=self.bff_url, timeout=15.0)

    @property
    def public_url(self) -> str:
        """The URL proofs name: ``public_url`` if given, else wherever requests go now."""
        return self._public_url or self.bff_url

    @property
    def device_id(self) -> str:
        return self.device.device_id

    @property
    def session_id(self) -> str:
        assert self.device.tokens is not None
        return self.device.tokens.session_id

    def headers(self, method: str, path: str, **extra: str) -> dict[str, str]:
        """Auth headers for ``method path`` (path without the query string), with the
        ``X-App-Version`` every call needs."""
        headers = self.device.auth_headers(method, self.public_url + path)
        headers.update(extra)
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.http.request(
            method, path, headers=self.headers(method, path, **(headers or {})), **kwargs
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def refresh_response(self, **kwargs: Any) -> httpx.Response:
        """``POST /auth/refresh`` as the desktop does it (see ``DemoDevice.bff_refresh_response``
        for the overrides); the tokens are not kept."""
        return self.device.bff_refresh_response(self.bff_url, **kwargs)

    def refresh(self) -> TokenResponse:
        """Refresh through the BFF and keep the new tokens."""
        return self.device.bff_refresh(self.bff_url)

    def close(self) -> None:
        self.http.close()
