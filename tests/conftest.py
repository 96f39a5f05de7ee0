"""Shared fixtures. Every test run gets its own databases and Redis key prefixes and its own
service processes on free ports, so it never touches the dev stack's data (see README).

Tests are grouped by what they prove: ``actors/`` (the actor runtime and kinds), ``ledger/``,
``edge/{auth,bus,dashboard,upstream,http}/``, ``ops/`` (simulator, stack, tools) and ``system/``
(several real processes together). The fixtures live in ``tests/support/``.
"""

# trio_asyncio patches asyncio's loop lookup at import time: import it first.
import trio_asyncio  # noqa: F401

pytest_plugins = [
    "tests.support.fixtures",
    "tests.support.sim",
    "tests.support.pubsub",
    "tests.support.stack",
]
