"""One instance, several worker processes (``BFF_WORKERS``): the supervisor and what a worker
needs to know about it.

A Python process uses one core; Cloud Run gives an instance two. With ``BFF_WORKERS`` > 1 the
process started as ``python -m edge`` becomes a small supervisor that serves nothing itself::

    trio.run(Supervisor.run)
    ├── _watch_signals         SIGTERM/SIGINT → forwarded to every worker (a second one: SIGKILL)
    ├── _kill_after            only once stopping: SIGKILL what outlived the stop deadline
    └── slots nursery
        └── _keep(i), i < N    run worker i (``python -m edge``); restart it when it dies

Each worker binds the same public port with ``SO_REUSEPORT`` (the kernel balances new
connections among them) and is a full member of the cluster, exactly as another instance is:
its own instance id ``<instance>-w<i>`` (subscriptions, SSE node, bus consumer group), actors,
relay election and stream ownership. Nothing is shared in memory; what must hold across
instances already goes through Redis, Postgres and the bus. A restarted worker keeps its id, so
it resumes its own subscription (and the entries its previous run left pending).

Workers run in their own process group: a terminal's Ctrl-C reaches only the supervisor, so
each worker hears exactly one SIGTERM (a second could arrive after its drain and kill it
mid-shutdown). A worker whose supervisor vanished (SIGKILL) shuts itself down
(:func:`watch_supervisor`): nobody would restart it or forward the platform's SIGTERM.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import trio
from prometheus_client import multiprocess

from edge.bus import instance_id
from edge.metrics import MULTIPROC_ENV
from edge.settings import Settings, SettingsError

log = logging.getLogger("bff.workers")

RESTART_MIN_S = 0.5  # first delay before a dead worker is started again; doubles per quick death
RESTART_MAX_S = 10.0
STOP_MARGIN_S = 10.0  # past the drain and the grace: closing the pools, the interpreter exiting
SUPERVISOR_POLL_S = 1.0  # how often a worker checks that its supervisor is still there
CGROUP_ROOT = Path("/sys/fs/cgroup")


# --- how many ---------------------------------------------------------------------------------


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may use: its affinity, capped by the cgroup v2 ``cpu.max`` quota
    (a container limited to 2 vCPU on a bigger host sees every host CPU in its affinity)."""
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """The tightest ``cpu.max`` quota (in CPUs) from this process's cgroup up to the root;
    ``None`` when no level sets one or there is no cgroup v2 hierarchy."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    own = next((line[3:] for line in lines if line.startswith("0::")), "/")
    level = root / own.strip("/")
    found: list[float] = []
    while True:
        quota = parse_cpu_max(level / "cpu.max")
        if quota is not None:
            found.append(quota)
        if level == root or root not in level.parents:
            break
        level = level.parent
    return min(found, default=None)


def parse_cpu_max(path: Path) -> float | None:
    """``"<quota> <period>"`` → quota / period CPUs; ``"max …"``, absent or unreadable → None."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def worker_count(settings: Settings) -> int:
    """How many workers ``python -m edge`` runs: 1 means serve in this process. A worker never
    supervises; with ``PORT=0`` (any free port) the default is one process, since workers could
    not agree on a port."""
    if settings.worker_index >= 0:
        return 1
    if settings.workers == 0:
        return 1 if settings.port == 0 else available_cpus()
    return settings.workers


def check_plan(settings: Settings, count: int) -> None:
    """Refuse, before anything starts, what N workers cannot do (``SettingsError``)."""
    if count <= 1:
        return
    if settings.port == 0:
        raise SettingsError(f"BFF_WORKERS={count} needs a fixed PORT (workers share it)")
    last_admin = settings.admin_port + count - 1
    if settings.admin_enabled and last_admin > 65535:
        raise SettingsError(
            f"BFF_ADMIN_PORT={settings.admin_port} is invalid: worker {count - 1} would serve "
            f"the admin endpoint on {last_admin}"
        )


def worker_env(
    settings: Settings, environ: Mapping[str, str], instance: str, index: int
) -> dict[str, str]:
    """Worker ``index``'s environment: the supervisor's, one process each, its own instance id
    and admin port."""
    env = dict(environ)
    env["BFF_WORKERS"] = "1"
    env["BFF_WORKER_INDEX"] = str(index)
    env["BFF_WORKER_SUPERVISOR"] = str(os.getpid())
    env["BFF_INSTANCE_ID"] = f"{instance}-w{index}"
    if settings.admin_port:
        env["BFF_ADMIN_PORT"] = str(settings.admin_port + index)
    return env


def exit_status(returncode: int) -> int:
    """A child's status as a shell reports it: killed by signal N → 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


# --- the supervisor ---------------------------------------------------------------------------


class RestartBudget:
    """At most ``limit`` restarts within any ``window_s``; counted over every worker, so a
    crash loop (whatever its cause) ends the instance instead of spinning."""

    def __init__(self, limit: int, window_s: float) -> None:
        self._limit = limit
        self._window = window_s
        self._times: deque[float] = deque()

    def spend(self, now: float) -> int | None:
        """Record one restart: how many the window now holds, or ``None`` past the budget."""
        while self._times and now - self._times[0] > self._window:
            self._times.popleft()
        if len(self._times) >= self._limit:
            return None
        self._times.append(now)
        return len(self._times)


class Supervisor:
    """Runs ``count`` workers until SIGTERM/SIGINT (then waits for them to drain) or until the
    restart budget is spent; :meth:`run` returns the process's exit status."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        *,
        environ: Mapping[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self._settings = settings
        self._count = count
        self._environ = dict(os.environ if environ is None else environ)
        self._command = command or [sys.executable, "-m", "edge"]
        self._instance = instance_id(settings)
        self._budget = RestartBudget(
            settings.workers_max_restarts, settings.workers_restart_window_s
        )
        self._stop_deadline = settings.sse_drain_s + settings.shutdown_grace_s + STOP_MARGIN_S
        self._live: dict[int, trio.Process] = {}
        self._statuses: dict[int, int] = {}
        self._stopping = trio.Event()
        self._gave_up = False
        self.restarts = 0

    async def run(self) -> int:
        log.info(
            "supervising workers",
            extra={"workers": self._count, "instance": self._instance, "pid": os.getpid()},
        )
        # One scrape of /metrics reaches one worker: all of them write their values here and
        # each answers for the instance (edge/metrics.py). /tmp: writable on a read-only root.
        self._metrics_dir = tempfile.mkdtemp(prefix="bff-metrics-")
        self._environ[MULTIPROC_ENV] = self._metrics_dir
        try:
            return await self._supervise()
        finally:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    async def _supervise(self) -> int:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._watch_signals)
            async with trio.open_nursery() as slots:
                for index in range(self._count):
                    slots.start_soon(self._keep, index)
            nursery.cancel_scope.cancel()  # every worker is gone: stop watching
        status = 1 if self._gave_up else next((s for s in self._statuses.values() if s), 0)
        log.info("workers stopped", extra={"status": status, "restarts": self.restarts})
        return status

    async def _keep(self, index: int) -> None:
        """Worker ``index``, started again whenever it dies while the supervisor is not
        stopping (whatever its status: a worker never exits on its own accord)."""
        quick_deaths = 0
        while not self._stopping.is_set():
            started = trio.current_time()
            returncode, pid = await self._run_once(index)
            # its live gauges go; its counts stay in the instance's totals
            multiprocess.mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]
            if self._stopping.is_set():
                # A worker still starting when the stop came dies of the SIGTERM we sent it,
                # before its own handler is in place: that is the stop we asked for, not a fault.
                stopped = returncode == -signal.SIGTERM
                self._statuses[index] = 0 if stopped else exit_status(returncode)
                return
            ran = trio.current_time() - started
            quick_deaths = quick_deaths + 1 if ran < self._settings.workers_restart_window_s else 1
            delay = min(RESTART_MAX_S, RESTART_MIN_S * 2 ** (quick_deaths - 1))
            in_window = self._budget.spend(trio.current_time())
            self.restarts += 1
            details = {
                "worker": index,
                "pid": pid,
                "status": exit_status(returncode),
                "ranSeconds": round(ran, 3),
                "restarts": self.restarts,
            }
            if in_window is None:
                log.critical(
                    "worker died past the restart budget; stopping the instance",
                    extra={**details, "budget": self._settings.workers_max_restarts},
                )
                self._gave_up = True
                self._statuses[index] = exit_status(returncode)
                self._stop()
                return
            log.error(
                "worker died; restarting it",
                extra={**details, "restartsInWindow": in_window, "restartInSeconds": delay},
            )
            with trio.move_on_after(delay):
                await self._stopping.wait()

    async def _run_once(self, index: int) -> tuple[int, int]:
        """Start worker ``index`` and wait for it to exit: its return code and pid. Cancelled,
        it is stopped as on SIGTERM (then killed past the stop deadline)."""
        env = worker_env(self._settings, self._environ, self._instance, index)
        async with trio.open_nursery() as nursery:
            proc: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    self._command,
                    env=env,
                    check=False,
                    stdin=subprocess.DEVNULL,
                    process_group=0,  # the terminal's Ctrl-C is the supervisor's to forward
                    deliver_cancel=self._terminate,
                )
            )
            self._live[index] = proc
            log.info("worker started", extra={"worker": index, "pid": proc.pid})
            if self._stopping.is_set():  # the signal came while it was being started
                _send(proc, signal.SIGTERM)
        del self._live[index]
        assert proc.returncode is not None
        return proc.returncode, proc.pid

    async def _terminate(self, proc: trio.Process) -> None:
        _send(proc, signal.SIGTERM)
        await trio.sleep(self._stop_deadline)
        log.warning("worker did not stop in time; killing it", extra={"pid": proc.pid})
        _send(proc, signal.SIGKILL)

    async def _watch_signals(self, *, task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()  # handlers are in place before any worker exists
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._stopping.is_set():
                    log.info("shutdown requested; stopping workers", extra={"signal": name})
                    self._stop()
                    continue
                log.warning("second shutdown signal; killing workers", extra={"signal": name})
                for proc in list(self._live.values()):
                    _send(proc, signal.SIGKILL)

    def _stop(self) -> None:
        """Forward SIGTERM to every worker (each drains its streams and in-flight requests),
        and kill what is still running after the stop deadline."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        for proc in list(self._live.values()):
            _send(proc, signal.SIGTERM)
        self._nursery.start_soon(self._kill_after)

    async def _kill_after(self) -> None:
        await trio.sleep(self._stop_deadline)
        for index, proc in list(self._live.items()):
            log.warning(
                "worker did not stop in time; killing it", extra={"worker": index, "pid": proc.pid}
            )
            _send(proc, signal.SIGKILL)


def _send(proc: trio.Process, signum: int) -> None:
    """Signal a worker unless it already exited (its pid may be reused once reaped)."""
    if proc.returncode is None:
        proc.send_signal(signum)


async def supervise(settings: Settings, count: int) -> int:
    """Run ``count`` workers of this service (``python -m edge``); the exit status."""
    return await Supervisor(settings, count).run()


# --- inside a worker --------------------------------------------------------------------------


async def watch_supervisor(
    parent: int, shutdown: trio.Event, poll_s: float = SUPERVISOR_POLL_S
) -> None:
    """Shut this worker down, as SIGTERM would, once its supervisor (``parent``, its pid as
    the supervisor told it: gone already if it died while this worker was starting) is not its
    parent any more; not once ``shutdown`` is under way (the signal handler is gone by then:
    SIGTERM would kill)."""
    while os.getppid() == parent:
        with trio.move_on_after(poll_s):
            await shutdown.wait()
            return
    log.error("the supervisor is gone; shutting down", extra={"supervisor": parent})
    os.kill(os.getpid(), signal.SIGTERM)


class _WorkerTag(logging.Filter):
    def __init__(self, index: int) -> None:
        super().__init__()
        self._index = index

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self._index
        return True


def tag_logs(index: int) -> None:
    """Every log line of this worker names it (the workers share the instance's stdout)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerTag(index))
