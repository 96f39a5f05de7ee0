"""The admin HTTP server: introspection and control of live actors, on 127.0.0.1 only.

It is a separate tiny app on ``BFF_ADMIN_PORT`` (never mounted on the public port): list live
actors with mailbox depth, restarts and age; kill one or many (a kill is a crash: the supervisor
restarts the actor, which rehydrates); and send a message to one actor, which the chaos tool
uses to drive load during a kill drill. Off by default in production mode (``BFF_ADMIN``).

It has no authentication: being bound to loopback is what guards it, so it also refuses what a
developer's browser could be made to send it from a web page. A request whose ``Host`` is not
this port on a loopback name (``127.0.0.1``, ``localhost``, ``[::1]``) is refused with 421
``MISDIRECTED_REQUEST`` (DNS rebinding: a page on ``evil.example`` whose name now resolves to
127.0.0.1), and a ``POST`` that is not ``Content-Type: application/json`` with 415
``UNSUPPORTED_MEDIA_TYPE`` (a cross-site form or ``text/plain`` fetch needs no CORS preflight;
``application/json`` does, and this server answers no preflight).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from actors.address import ActorAddress
from actors.errors import ActorError, UnknownKind, WrongMessage
from actors.system import ActorInfo, ActorSystem
from edge.api import Api, decode_body, decode_query
from edge.asgi import BodyDeadlines, ShieldFinalSend
from edge.decoding import Malformed, convert, decode_json
from edge.errors import ApiError, Code, code_for_actor_error, code_for_status, envelope_bytes
from schemas.identifiers import Identifier

log = logging.getLogger("bff.admin")
JSON = "application/json; charset=utf-8"
ADMIN_HOST = "127.0.0.1"  # never configurable: the admin surface is not for the network
ADMIN_BODY_TIMEOUT_S = 10.0  # a request body must arrive within this (then 408)
ADMIN_BODY_IDLE_S = 5.0  # and never stall longer than this between chunks

api = Api()
_encoder = msgspec.json.Encoder()


class ActorView(msgspec.Struct, kw_only=True, rename="camel"):
    kind: str
    tenant: str
    id: str
    status: str
    mailbox_depth: int
    restarts: int
    processed: int
    age_seconds: float
    since_restart_seconds: float
    last_error: str | None = None


class ActorList(msgspec.Struct, kw_only=True):
    count: int
    failed: int
    actors: list[ActorView]


class ActorQuery(msgspec.Struct, kw_only=True):
    kind: str | None = None
    tenant: str | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 1000


class KillRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Select by kind/tenant, then either ``ids``, a random ``count``, or ``all``."""

    kind: str | None = None
    tenant: str | None = None
    ids: list[Identifier] | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    all: bool = False


class KilledActor(msgspec.Struct, kw_only=True):
    kind: str
    tenant: str
    id: str


class KillResult(msgspec.Struct, kw_only=True):
    killed: list[KilledActor]


class SendQuery(msgspec.Struct, kw_only=True):
    timeout: Annotated[float, msgspec.Meta(gt=0, le=60)] | None = None


def _view(info: ActorInfo) -> ActorView:
    a = info.address
    return ActorView(
        kind=a.kind,
        tenant=a.tenant,
        id=a.id,
        status=info.status,
        mailbox_depth=info.mailbox_depth,
        restarts=info.restarts,
        processed=info.processed,
        age_seconds=info.age_s,
        since_restart_seconds=info.since_restart_s,
        last_error=info.last_error,
    )


def _json(value: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status=status, content_type=JSON)


@api.route(
    "/admin/actors", summary="Live actors", tag="admin", query=ActorQuery, response=ActorList
)
async def list_actors(system: ActorSystem) -> Response:
    query = decode_query(ActorQuery)
    infos = system.actors(kind=query.kind, tenant=query.tenant)
    failed = sum(1 for i in infos if i.status == "failed")
    views = [_view(i) for i in infos[: query.limit]]
    return _json(ActorList(count=len(infos), failed=failed, actors=views))


@api.route(
    "/admin/actors/kill",
    "POST",
    summary="Kill actors (as a crash: they restart and rehydrate); a failed actor is cleared",
    tag="admin",
    body=KillRequest,
    response=KillResult,
)
async def kill_actors(system: ActorSystem) -> Response:
    body = await decode_body(KillRequest)
    if body.ids is None and body.count is None and not body.all:
        raise ApiError(Code.VALIDATION_FAILED, "ids: give ids, count, or all=true")
    killed = system.kill_many(kind=body.kind, tenant=body.tenant, ids=body.ids, count=body.count)
    log.info("actors killed via admin", extra={"count": len(killed)})
    return _json(
        KillResult(killed=[KilledActor(kind=a.kind, tenant=a.tenant, id=a.id) for a in killed])
    )


@api.route(
    "/admin/actors/{kind}/{tenant}/{actor_id}/ask",
    "POST",
    summary="Ask one actor (body: a message of its kind, tagged by `type`); returns its reply",
    tag="admin",
    query=SendQuery,
)
async def ask_actor(system: ActorSystem, kind: str, tenant: str, actor_id: str) -> Response:
    target, message = await _addressed_message(system, kind, tenant, actor_id)
    timeout = decode_query(SendQuery).timeout
    reply = await system.ask(target, message, timeout=timeout)
    return _json({"reply": reply})


@api.route(
    "/admin/actors/{kind}/{tenant}/{actor_id}/tell",
    "POST",
    summary="Tell one actor (fire and forget, waits only while its mailbox is full)",
    tag="admin",
    query=SendQuery,
)
async def tell_actor(system: ActorSystem, kind: str, tenant: str, actor_id: str) -> Response:
    target, message = await _addressed_message(system, kind, tenant, actor_id)
    await system.tell(target, message, timeout=decode_query(SendQuery).timeout)
    return _json({"enqueued": True}, status=202)


async def _addressed_message(
    system: ActorSystem, kind: str, tenant: str, actor_id: str
) -> tuple[ActorAddress, Any]:
    spec = system.kinds.get(kind)
    if spec is None:
        raise ApiError(Code.NOT_FOUND, f"no actor kind {kind!r}")
    address = {"kind": kind, "tenant": tenant, "id": actor_id}
    raw = await request.get_data(as_text=False)
    try:
        target = convert(address, ActorAddress, where="path")
        message = decode_json(raw, spec.messages, where="body")
    except Malformed as exc:
        raise ApiError(Code.VALIDATION_FAILED, str(exc)) from None
    return target, message


def loopback_hosts(port: int) -> frozenset[str]:
    """The ``Host`` values a local client of ``127.0.0.1:port`` sends."""
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


def check_origin(port: int) -> None:
    """Refuse a request a browser could have been made to send (see the module docstring)."""
    hosts = request.headers.getlist("Host")
    if len(hosts) != 1 or hosts[0].strip().lower() not in loopback_hosts(port):
        raise ApiError(
            Code.MISDIRECTED_REQUEST,
            f"Host must be 127.0.0.1:{port}, localhost:{port} or [::1]:{port}",
        )
    if request.method == "POST":
        media_type = (request.headers.get("Content-Type") or "").split(";", 1)[0]
        if media_type.strip().lower() != "application/json":
            raise ApiError(Code.UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json")


def create_admin_app(system: ActorSystem, port: int) -> QuartTrio:
    app = QuartTrio("bff-backoffice-admin")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    api.install(app, context=system)

    @app.before_request
    async def origin() -> None:
        check_origin(port)

    @app.get("/admin/health")
    async def health() -> Response:
        return _json({"status": "ok", "actors": len(system.actors())})

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return _error(exc.code, exc.message)

    @app.errorhandler(ActorError)
    async def actor_error(exc: ActorError) -> Response:
        return _error(code_for_actor_error(exc), str(exc))

    @app.errorhandler(UnknownKind)
    async def unknown_kind(exc: UnknownKind) -> Response:
        return _error(Code.NOT_FOUND, str(exc))

    @app.errorhandler(WrongMessage)
    async def wrong_message(exc: WrongMessage) -> Response:
        return _error(Code.VALIDATION_FAILED, str(exc))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        return _error(code_for_status(status), exc.description or "error")

    return app


def _error(code: Code, message: str) -> Response:
    return Response(envelope_bytes(code, message, ""), status=code.status, content_type=JSON)


def admin_config(port: int) -> Config:
    config = Config()
    config.bind = [f"{ADMIN_HOST}:{port}"]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 5.0
    return config


async def serve_admin(
    system: ActorSystem,
    port: int,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the admin app on ``127.0.0.1:port`` until cancelled."""
    app = ShieldFinalSend(create_admin_app(system, port))  # type: ignore[arg-type]
    timed = BodyDeadlines(app, total_s=ADMIN_BODY_TIMEOUT_S, idle_s=ADMIN_BODY_IDLE_S)
    await serve(timed, admin_config(port), task_status=task_status)  # type: ignore[arg-type]
