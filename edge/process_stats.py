"""The worker's own resident memory as a gauge (``bff_process_resident_memory_bytes``).

With worker processes the Prometheus client's default process collector is off (it would report
only the scraped worker), so each worker samples its own RSS into a ``liveall`` gauge: one series
per live worker, which the F-37 memory-growth alert compares over hours.
"""

from __future__ import annotations

import logging
import os

import trio

from edge.metrics import Metrics

log = logging.getLogger("bff.process")
SAMPLE_EVERY_S = 15.0
_STATM = "/proc/self/statm"


def resident_bytes() -> int | None:
    """This process's resident set size now; None where ``/proc`` is not there (not Linux)."""
    try:
        with open(_STATM, "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


async def sample_resident_memory(metrics: Metrics, every_s: float = SAMPLE_EVERY_S) -> None:
    """Until cancelled: set the gauge now and every ``every_s``."""
    if resident_bytes() is None:
        log.info("no /proc/self/statm: bff_process_resident_memory_bytes is not exported")
        return
    while True:
        rss = resident_bytes()
        if rss is not None:
            metrics.rss.set(rss)
        await trio.sleep(every_s)
