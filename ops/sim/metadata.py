"""A GCE/Cloud Run metadata-server emulator for the identity endpoint, so the BFF's production
upstream auth (Google ID tokens, audience = upstream URL) runs against something real in tests.

``GET /metadata/computeMetadata/v1/instance/service-accounts/default/identity?audience=…``
with ``Metadata-Flavor: Google`` → a signed JWT (text/plain) valid for ``id_token_ttl_s``.
"""

from __future__ import annotations

import time
import uuid

import msgspec

from ops.sim.context import Sim
from ops.sim.http import HttpError, Request, Response, Router
from ops.sim.identity import SigningKeys

IDENTITY_PATH = "/metadata/computeMetadata/v1/instance/service-accounts/default/identity"
SERVICE_ACCOUNT = "bff-backoffice-sa@melmastoon-local.iam.gserviceaccount.com"


class IdTokenClaims(msgspec.Struct, kw_only=True):
    iss: str
    aud: str
    azp: str
    sub: str
    email: str
    iat: int
    exp: int
    jti: str


def register(router: Router, sim: Sim) -> None:
    keys = SigningKeys()

    async def identity(request: Request) -> Response:
        if request.header("metadata-flavor") != "Google":
            raise HttpError(403, "FORBIDDEN", "Metadata-Flavor: Google header required")
        audience = request.query.get("audience")
        if not audience:
            raise HttpError(400, "VALIDATION_FAILED", "audience: required")
        now = int(time.time())
        claims = IdTokenClaims(
            iss="https://accounts.google.com",
            aud=audience,
            azp=SERVICE_ACCOUNT,
            sub="1067",
            email=SERVICE_ACCOUNT,
            iat=now,
            exp=now + sim.id_token_ttl_s,
            jti=uuid.uuid4().hex,
        )
        return Response(200, keys.sign(claims, "JWT").encode(), content_type="text/plain")

    router.add("GET", IDENTITY_PATH, identity)
