"""The load generators' side of their pipe to a benchmark driver: one JSON command a line on
stdin (``{"cmd": name, ...arguments}``), one JSON answer a line on stdout, until ``quit`` or the
end of stdin (the driver side is ``ops.bench.saturation.LoadProcess``)."""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

Handler = Callable[..., Any]  # returns the answer (a JSON object), or an awaitable of it


async def answer_commands(handlers: Mapping[str, Handler]) -> None:
    """Run each command with its handler (the command's other fields as keyword arguments)."""
    import trio  # the generators are Trio programs; the drivers need not import this module

    while True:
        line = await trio.to_thread.run_sync(sys.stdin.readline)
        if not line:
            return
        command = json.loads(line)
        cmd = command.pop("cmd")
        if cmd == "quit":
            return
        handler = handlers.get(cmd)
        if handler is None:
            answer: Any = {"error": f"unknown command {cmd!r}"}
        else:
            answer = handler(**command)
            if inspect.isawaitable(answer):
                answer = await answer
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
