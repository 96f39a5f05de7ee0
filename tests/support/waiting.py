"""Waiting in async tests: poll a condition under a deadline, never sleep a fixed time."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import trio


async def eventually(check: Callable[[], Awaitable[object] | object], timeout: float = 10) -> None:
    """Poll ``check`` (sync or async) until it is truthy; fail after ``timeout`` seconds."""
    with trio.fail_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await trio.sleep(0.01)
