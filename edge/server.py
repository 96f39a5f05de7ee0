"""The service process: one ``trio.run`` owning the asyncio bridge, the pools, the HTTP server.

Task tree (docs/ARCHITECTURE.md has the full picture)::

    trio.run(serve_service)
    └── trio_asyncio.open_loop()           asyncpg and redis-py run on this loop
        └── assemble()                     every long-lived object, in dependency order
            └── nursery
                ├── watch_signals          SIGTERM/SIGINT → drain streams → shutdown trigger
                └── hypercorn serve        public app on $PORT
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import warnings
from functools import partial

import trio
import trio_asyncio
from hypercorn.config import Config
from hypercorn.trio import serve

from edge import parser_errors, tracing
from edge.app import asgi_stack, create_app
from edge.asgi import MAX_HEAD_BYTES
from edge.assembly import Services, assemble
from edge.logs import configure_logging
from edge.settings import Settings, SettingsError, load_settings, redact_url
from edge.workers import check_plan, supervise, tag_logs, watch_supervisor, worker_count
from ledger.database import contain_asyncio_errors

log = logging.getLogger("bff.server")


# Connections the kernel holds for us while the accept loop catches up: a deploy reconnects
# ~2,500 SSE clients at once; past the backlog a connect waits for a SYN retransmit (1 s, then
# 3 s). The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
LISTEN_BACKLOG = 4096


def hypercorn_config(settings: Settings) -> Config:
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.backlog = LISTEN_BACKLOG
    # Heads over this are refused (431, edge/asgi.py HeadLimit; edge/parser_errors.py).
    config.h11_max_incomplete_size = MAX_HEAD_BYTES
    config.h2_max_header_list_size = MAX_HEAD_BYTES
    config.keep_alive_timeout = settings.keepalive_timeout_s
    config.graceful_timeout = settings.shutdown_grace_s
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False
    if settings.worker_index >= 0:
        # The instance's workers share the port: hypercorn binds with SO_REUSEPORT (and the
        # kernel balances new connections among them) only when told it runs several workers;
        # ``serve`` then warns that ``workers`` does nothing else, which is what we want.
        config.workers = 2
        warnings.filterwarnings("ignore", message="The config `workers` has no affect")
    return config


async def watch_signals(services: Services, shutdown: trio.Event) -> None:
    """On the first SIGTERM/SIGINT: fail readiness, tell every SSE stream to reconnect
    elsewhere and wait for them to close (TOPOLOGY §15), then let hypercorn stop accepting and
    finish the requests in flight."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("shutdown requested", extra={"signal": signal.Signals(signum).name})
            services.readiness.draining = True
            await services.streams.drain(services.settings.sse_drain_s)
            shutdown.set()
            return


async def serve_service(
    settings: Settings, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run until SIGTERM/SIGINT; in-flight requests get ``shutdown_grace_s`` to finish."""
    parser_errors.install()  # what hypercorn's parser refuses gets the envelope too
    with tracing.configured(
        settings.tracing, settings.otlp_endpoint, instance=settings.instance_id
    ):
        await _serve(settings, task_status)
    log.info("stopped")


async def _serve(settings: Settings, task_status: trio.TaskStatus[list[str]]) -> None:
    async with trio_asyncio.open_loop() as loop:
        contain_asyncio_errors(loop)  # before anything can leave an orphaned future
        async with assemble(settings) as services:
            app = create_app(services)
            shutdown = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(watch_signals, services, shutdown)
                if settings.worker_supervisor:
                    nursery.start_soon(watch_supervisor, settings.worker_supervisor, shutdown)

                async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
                    await serve(
                        asgi_stack(app, services),  # type: ignore[arg-type]
                        hypercorn_config(settings),
                        shutdown_trigger=shutdown.wait,
                        task_status=task_status,
                    )
                    nursery.cancel_scope.cancel()

                binds: list[str] = await nursery.start(run_http)
                log.info(
                    "serving",
                    extra={
                        "binds": binds,
                        "database": redact_url(settings.database_url),
                        "redisSession": redact_url(settings.redis_session_url),
                        "redisCache": redact_url(settings.redis_cache_url),
                        "bus": settings.bus_kind,
                    },
                )
                tune_gc(settings.gc_gen0_threshold)
                task_status.started(binds)


def tune_gc(gen0_threshold: int) -> None:
    """Freeze what start-up made (modules, app, pools: never garbage) out of every collection,
    and collect the young generation less often. Per-stream objects would otherwise make each
    collection scan thousands of streams during a fan-out (``notes/trio-stack.md`` §4: this
    roughly halves a 2,500-stream broadcast)."""
    if gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, max(gen1, 50), max(gen2, 100))


def main() -> None:
    """Serve in this process, or (``BFF_WORKERS`` > 1) supervise that many worker processes
    (edge/workers.py) and exit with their status."""
    try:
        settings = load_settings()
        workers = worker_count(settings)
        check_plan(settings, workers)
    except SettingsError as exc:
        print(f"bff-backoffice-service: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level)
    if workers > 1:
        raise SystemExit(trio.run(supervise, settings, workers))
    if settings.worker_index >= 0:
        tag_logs(settings.worker_index)
    trio.run(partial(serve_service, settings))


if __name__ == "__main__":
    main()
