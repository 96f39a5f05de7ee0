"""The simulator's ASGI app: every upstream request goes record → fault → latency →
idempotency → handler → (drift); control routes (``/_sim``, ``/health``) skip all of that."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import trio

from ops.sim.calls import CallRecord
from ops.sim.context import Sim
from ops.sim.faults import FAULTABLE, drift
from ops.sim.http import (
    JSON,
    HttpError,
    Receive,
    Request,
    Response,
    Route,
    Router,
    Scope,
    Send,
    error_response,
    read_request,
    send_response,
    wait_for_disconnect,
)

log = logging.getLogger("sim.http")


class SimApp:
    def __init__(self, sim: Sim, router: Router) -> None:
        self.sim = sim
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = await read_request(scope, receive)
        response = await self.handle(request, receive)
        if response is not None:
            try:
                await send_response(send, response)
            except Exception:  # the client went away (e.g. it timed out): nothing to answer
                log.debug("client gone before the answer", extra={"path": request.path})

    async def handle(self, request: Request, receive: Receive) -> Response | None:
        matched = self.router.match(request.method, request.path)
        if matched is None:
            status = 405 if self.router.allows(request.path) else 404
            code = "METHOD_NOT_ALLOWED" if status == 405 else "NOT_FOUND"
            return error_response(
                HttpError(status, code, f"no route for {request.method} {request.path[:200]}")
            )
        route, request.params = matched
        service = request.path.split("/", 2)[1]
        if service not in FAULTABLE:
            return await _run(route, request)
        return await self._upstream(service, route, request, receive)

    async def _upstream(
        self, service: str, route: Route, request: Request, receive: Receive
    ) -> Response | None:
        sim = self.sim
        record = sim.calls.record(service, request, mutation=route.mutation)
        started = trio.current_time()
        fault = sim.faults.draw(service)
        if fault is not None:
            record.fault = fault.mode
        if fault is not None and fault.mode == "hang":
            await wait_for_disconnect(receive)
            return None
        delay = sim.latency.delay_s(service)
        if fault is not None and fault.mode in ("latency", "error"):
            delay += fault.latency_ms / 1000
        if delay > 0:
            await trio.sleep(delay)
        if fault is not None and fault.mode == "error":
            response = error_response(
                HttpError(fault.status, "INJECTED_FAULT", f"{service} failed (injected fault)")
            )
        else:
            response = await self._execute(service, route, request, record)
            if fault is not None and fault.mode == "drift" and response.status < 300:
                response = _drifted(response)
        record.status = response.status
        record.duration_ms = round((trio.current_time() - started) * 1000, 2)
        return response

    async def _execute(
        self, service: str, route: Route, request: Request, record: CallRecord
    ) -> Response:
        tenant = request.params.get("tenantId", "")
        store = self.sim.idempotency
        if route.mutation:
            try:
                replay = store.lookup(service, tenant, request)
            except HttpError as exc:
                return error_response(exc)
            if replay is not None:
                record.replayed = True
                return replay
        response = await _run(route, request)
        if route.mutation:
            self.sim.dirty = True
            store.store(service, tenant, request, response)
        return response


async def _run(route: Route, request: Request) -> Response:
    try:
        return await route.handler(request)
    except HttpError as exc:
        return error_response(exc)
    except Exception:
        log.exception("handler failed", extra={"path": request.path})
        return error_response(HttpError(500, "INTERNAL", "simulator bug (see its log)"))


def _drifted(response: Response) -> Response:
    payload: Any = response.payload
    if isinstance(payload, bytes):
        if response.content_type != JSON:
            return Response(
                response.status, b"not-a-token", response.headers, response.content_type
            )
        payload = msgspec.json.decode(payload)
    return Response(response.status, drift(payload), response.headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
