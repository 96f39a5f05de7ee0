"""``GET /sse/stream``: the device's one live stream (API contract §6).

Opening a stream, in order: check the query and ``Last-Event-ID``; register with this
instance's hub (so nothing pushed from now on is missed); ask the DeviceActor to make it the
device's one stream (``AttachStream``: the session must still be open, a stream elsewhere is
told it was replaced, a device opening streams in a loop is refused); subscribe the device to
its properties' events (``SubscribeDevice``, held in the ledger: every instance fans out to
it); then stream. When the response ends, for whatever reason, the DeviceActor releases the
claim unless a newer stream took it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import trio
from quart import Response, request

from actors.address import device, property_
from actors.device import AttachStream, DetachStream, StreamRefused
from actors.errors import ActorError
from actors.ports import StreamGrant
from actors.property import SubscribeDevice
from edge.api import Api, decode_query
from edge.asgi import CANCEL_SCOPE_KEY
from edge.assembly import Services
from edge.auth.principal import Principal
from edge.errors import ApiError, Code, code_for_actor_error
from edge.sse.connection import LiveStream, StreamView
from edge.sse.feed import parse_id
from edge.sse.hub import Registration
from schemas.sse import CHANNELS, StreamQuery

log = logging.getLogger("bff.routes.sse")
api = Api()
BASE = "/bff/backoffice/v1"
STREAM_PATH = "/sse/stream"
RELEASE_TIMEOUT_S = 2.0


def parse_channels(raw: str | None) -> frozenset[str]:
    """``ai,alerts,dashboard,session`` → the set; absent → all four."""
    if raw is None:
        return frozenset(CHANNELS)
    names = [name.strip() for name in raw.split(",") if name.strip()]
    unknown = [name for name in names if name not in CHANNELS]
    if unknown or not names:
        shown = unknown[0][:40] if unknown else ""
        raise ApiError(
            Code.VALIDATION_FAILED,
            f"channels: unknown channel {shown!r}; expected a comma-separated list of "
            + ", ".join(CHANNELS),
        )
    return frozenset(names)


def last_event_id() -> str | None:
    raw = request.headers.get("Last-Event-ID")
    if raw is None or raw == "":
        return None
    if parse_id(raw) is None:
        raise ApiError(
            Code.VALIDATION_FAILED, "Last-Event-ID: not an id this service sent (<ms>-<seq>)"
        )
    return raw


@api.route(
    f"{BASE}{STREAM_PATH}",
    "GET",
    summary="The device's one live stream (`text/event-stream`): `ai.suggestion`, "
    "`ai.suggestion.invalidated`, `alert`, `alert.resolved`, `dashboard.hint` and `session` "
    "events, each with an `id:` increasing per device; a keep-alive comment every 15 s; "
    "`Last-Event-ID` resumes from the device's history (older than it → `session` "
    "`{kind: reconnect, reason: history_gap}`). `channels` filters (session events always "
    "come); `propertyId` narrows to one property of the token (default: all of them). A newer "
    "stream of the device replaces this one (`session` `{kind: replaced}`); a draining "
    "instance sends `{kind: reconnect}`; the session's end sends `{kind: force_logout}` (or, "
    "for the device's own sign-out, just closes). Opening more than `BFF_SSE_OPENS_PER_MINUTE` "
    "streams a minute → 429",
    tag="sse",
    query=StreamQuery,
    response=str,
    content_type="text/event-stream",
    auth="sse",
    errors=(Code.RATE_LIMITED, Code.SERVICE_UNAVAILABLE, Code.CACHE_UNAVAILABLE),
)
async def stream(services: Services, principal: Principal) -> Response:
    started = time.perf_counter()
    query = decode_query(StreamQuery)
    channels = parse_channels(query.channels)
    if query.property_id is not None:
        principal.require_property(query.property_id)
        properties = frozenset({query.property_id})
    else:
        properties = frozenset(principal.property_ids)
    after = last_event_id()
    hub = services.streams
    if hub.draining:
        services.metrics.sse_refused.labels("draining").inc()
        raise ApiError(
            Code.SERVICE_UNAVAILABLE,
            "this instance is shutting down; reconnect",
            headers={"Retry-After": "1"},
        )
    scope = cast(dict[str, Any], request.scope).get(CANCEL_SCOPE_KEY)
    if not isinstance(scope, trio.CancelScope):
        raise RuntimeError("the stream route runs under edge.asgi.StreamScopes")
    token = uuid.uuid4().hex
    registration = hub.register(
        principal.tenant, principal.device_id, token, principal.session_id, scope
    )
    reg = registration.__enter__()
    try:
        grant = await _attach(services, principal, token, after, properties)
    except BaseException:
        registration.__exit__(None, None, None)
        raise
    reg.claimed = True  # the hub renews its ownership from now on
    live = LiveStream(
        reg,
        hub.feed,
        StreamView(principal.session_id, channels, properties),
        services.metrics,
        resume_from=grant.resume_from,
        gap=grant.gap,
        keepalive_s=services.settings.sse_keepalive_s,
        retry_ms=services.settings.sse_retry_ms,
        expires_at=float(principal.expires_at or time.time() + 3600),
    )
    body = _body(services, principal, live, registration, started)
    response = Response(
        body,
        content_type="text/event-stream; charset=utf-8",
        headers={"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream has no response deadline (Quart's default is 60 s)
    return response


async def _attach(
    services: Services,
    principal: Principal,
    token: str,
    after: str | None,
    properties: frozenset[str],
) -> StreamGrant:
    attach = AttachStream(
        token=token, node=services.streams.node, session_id=principal.session_id, after=after
    )
    try:
        answer = await services.actors.ask(device(principal.tenant, principal.device_id), attach)
        for pid in sorted(properties):
            subscribe = SubscribeDevice(device_id=principal.device_id)
            await services.actors.ask(property_(principal.tenant, pid), subscribe)
    except ActorError as exc:
        raise ApiError(code_for_actor_error(exc), "stream not opened; retry") from None
    if isinstance(answer, StreamRefused):
        services.metrics.sse_refused.labels(answer.reason).inc()
        if answer.retry_after:
            raise ApiError(
                Code.RATE_LIMITED,
                "too many streams opened by this device; retry later",
                headers={"Retry-After": str(answer.retry_after)},
            )
        raise ApiError(Code.SESSION_EXPIRED, "the session has ended")
    assert isinstance(answer, StreamGrant)
    return answer


async def _body(
    services: Services,
    principal: Principal,
    live: LiveStream,
    registration: contextlib.AbstractContextManager[Registration],
    started: float,
) -> AsyncIterator[bytes]:
    """The response body; however it ends, the registration and the claim are released."""
    first = True
    try:
        async for chunk in live.events():
            yield chunk
            if first:
                services.metrics.sse_first_event_seconds.observe(time.perf_counter() - started)
                first = False
    finally:
        registration.__exit__(None, None, None)
        with trio.CancelScope(shield=True), trio.move_on_after(RELEASE_TIMEOUT_S):
            detach = DetachStream(token=live.reg.token)
            try:
                await services.actors.ask(device(principal.tenant, principal.device_id), detach)
            except ActorError as exc:  # the claim lapses by itself (its TTL)
                log.warning("stream claim not released", extra={"error": str(exc)})
