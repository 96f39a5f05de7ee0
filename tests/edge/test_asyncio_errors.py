"""An orphaned asyncio error (asyncpg's "unexpected connection_lost()" for a connection this
process already gave up on) is logged, never raised into trio-asyncio's loop, where it would end
the worker (seen at 50 tenants in the fleet benchmark)."""

from __future__ import annotations

import logging

import pytest
import trio
import trio_asyncio

from ledger.database import contain_asyncio_errors


def _orphan(loop: trio_asyncio.TrioEventLoop) -> None:
    loop.call_exception_handler(
        {
            "message": "Future exception was never retrieved",
            "exception": ConnectionError("unexpected connection_lost() call"),
        }
    )


async def test_an_orphaned_asyncio_error_is_logged_and_the_loop_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="bff.ledger.database"):
        async with trio_asyncio.open_loop() as loop:
            contain_asyncio_errors(loop)
            _orphan(loop)
            await trio.lowlevel.checkpoint()  # the raise would have been scheduled by now
            assert await trio_asyncio.aio_as_trio(_answer)() == 42  # the loop still serves
    contained = [r for r in caplog.records if "contained" in r.getMessage()]
    assert len(contained) == 1
    assert "unexpected connection_lost" in contained[0].__dict__["error"]


async def test_without_it_trio_asyncio_ends_the_loop() -> None:
    """The failure the handler prevents (so the test above proves something)."""
    with pytest.raises(BaseExceptionGroup) as ended:
        async with trio_asyncio.open_loop() as loop:
            _orphan(loop)
            await trio.sleep(5)  # a deadline: the raise ends the loop long before
    assert ended.group_contains(ConnectionError)


async def _answer() -> int:
    return 42
