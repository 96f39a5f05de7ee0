"""Run the demo-hotel simulator: ``python -m ops.sim`` (127.0.0.1:$PORT, default 8090).

One process serves all 14 simulated upstreams under ``/<name>/…``, the metadata-server emulator,
and the ``/_sim/*`` control API; SIGTERM/SIGINT stop it cleanly.
"""

from __future__ import annotations

import logging
import signal

import trio
import trio_asyncio
from hypercorn.config import Config
from hypercorn.trio import serve

from edge.logs import configure_logging
from ops.sim.app import build_app
from ops.sim.bus import open_sim_publisher
from ops.sim.config import SimConfig, load_config
from ops.sim.context import Sim
from ops.sim.events import EventSink

log = logging.getLogger("sim")


def hypercorn_config(config: SimConfig) -> Config:
    hc = Config()
    hc.bind = [f"127.0.0.1:{config.port}"]
    hc.accesslog = None
    hc.graceful_timeout = 1.0
    hc.keep_alive_timeout = 30.0
    hc.include_server_header = False
    hc.errorlog = logging.getLogger("hypercorn.error")
    return hc


async def serve_sim(config: SimConfig) -> None:
    async with trio_asyncio.open_loop(), open_sim_publisher(config) as publisher:
        sink = EventSink(publisher)
        sim = Sim.create(config, sink)
        app = build_app(sim)
        shutdown = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink.run)
            nursery.start_soon(_watch_signals, shutdown)

            async def run_http(task_status: trio.TaskStatus[list[str]]) -> None:
                await serve(
                    app,  # type: ignore[arg-type]  # a plain ASGI callable
                    hypercorn_config(config),
                    shutdown_trigger=shutdown.wait,
                    task_status=task_status,
                )
                nursery.cancel_scope.cancel()  # serve returned: stop the publisher too

            binds: list[str] = await nursery.start(run_http)
            log.info(
                "simulator serving",
                extra={
                    "binds": binds,
                    "seed": config.seed,
                    "latencyScale": config.latency_scale,
                    "bus": "connected" if sink.connected else "record",
                },
            )
    log.info("simulator stopped")


async def _watch_signals(shutdown: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            shutdown.set()
            return


def main() -> None:
    config = load_config()
    configure_logging("INFO")
    trio.run(serve_sim, config)


if __name__ == "__main__":
    main()
