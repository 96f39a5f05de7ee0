"""Run the simulator: ``python -m ops.sim`` (listens on $PORT, default 8090)."""

from __future__ import annotations

import os
from functools import partial

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response
from quart_trio import QuartTrio


def create_app() -> QuartTrio:
    app = QuartTrio("demo-hotel-simulator")

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"ok"}', content_type="application/json")

    return app


def main() -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{os.environ.get('PORT', '8090')}"]
    config.accesslog = None
    trio.run(partial(serve, create_app(), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
