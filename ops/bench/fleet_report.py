"""What a fleet run measured, as figures and as text: per-route percentiles against the spec's
p95 targets and against the run's own baselines (the bare ``/health/live`` and the simulator's
own latency for the upstreams a route waits for), SSE delivery, the BFF's CPU and RSS, the
ceiling over several fleet sizes, and a latency-over-time plot.

Kept apart from the driver so that a test (or a later re-rendering) reads a :class:`FleetRun`
without running anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ops.bench.fleet_model import (
    ROUTE_UPSTREAMS,
    ROUTES,
    SPEC_P95_MS,
    LoadResult,
    Sample,
)
from ops.bench.stack import percentiles

MAX_ERROR_RATE = 0.01  # a route with more failed requests than this is not "served"
X = "\u00d7"  # multiplication sign, for the markdown
NONE = "\u2013"  # en dash: no figure


@dataclass
class Resources:
    """One sample a second over the window (cores = CPU seconds per second)."""

    at: list[float] = field(default_factory=list)
    bff_cores: list[float] = field(default_factory=list)
    bff_rss_mib: list[float] = field(default_factory=list)
    sim_cores: list[float] = field(default_factory=list)
    load_cores: list[float] = field(default_factory=list)
    busy_cores: list[float] = field(default_factory=list)


@dataclass
class FleetRun:
    tenants: int
    devices_per_tenant: int
    seconds: float
    multiplier: float
    workers: int
    loaders: int
    devices: int  # signed in
    signin_failed: dict[str, int]
    signin_s: float
    demo_s: float
    streams_failed: dict[str, int]
    open_s: float
    open_latencies: list[float]
    live: dict[str, Any]  # saturation_load's answer for the /health/live baseline
    results: list[LoadResult]
    published: dict[str, tuple[float, int]]  # "alert:<id>" → (time.time() before the raise, tenant)
    raise_errors: int
    upstream_ms: dict[str, tuple[int, float]]  # service → (calls, p95 ms), simulator's own
    resources: Resources
    profile: str = ""  # py-spy's samples by package, when profiled

    @property
    def samples(self) -> list[Sample]:
        return [s for r in self.results for s in r.samples]

    @property
    def label(self) -> str:
        return f"{self.tenants} {X} {self.devices_per_tenant}"


@dataclass(frozen=True)
class RouteRow:
    route: str
    requests: int
    errors: int
    rate: float  # requests per second over the window
    p50: float
    p95: float
    p99: float
    target: float | None
    upstream_p95: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def met(self) -> bool:
        in_time = self.target is None or (self.requests > self.errors and self.p95 < self.target)
        return in_time and self.error_rate <= MAX_ERROR_RATE


def route_rows(run: FleetRun) -> list[RouteRow]:
    by_route: dict[str, list[Sample]] = {r: [] for r in ROUTES}
    for sample in run.samples:
        by_route.setdefault(sample.route, []).append(sample)
    rows = []
    for route, samples in by_route.items():
        ok = [s.latency for s in samples if 200 <= s.status < 300]
        p50, p95, p99 = percentiles(ok)
        rows.append(
            RouteRow(
                route=route,
                requests=len(samples),
                errors=len(samples) - len(ok),
                rate=len(samples) / run.seconds,
                p50=p50,
                p95=p95,
                p99=p99,
                target=SPEC_P95_MS.get(route),
                upstream_p95=_upstream_p95(run, route),
            )
        )
    return rows


def _upstream_p95(run: FleetRun, route: str) -> float | None:
    found = [run.upstream_ms[s][1] for s in ROUTE_UPSTREAMS.get(route, ()) if s in run.upstream_ms]
    return max(found) if found else None


def error_codes(run: FleetRun) -> Counter[str]:
    return Counter(
        f"{s.route}: {s.status} {s.code}".strip() for s in run.samples if not 200 <= s.status < 300
    )


@dataclass(frozen=True)
class Delivery:
    kind: str
    events: int
    expected: int
    arrived: int
    p50: float
    p95: float
    p99: float
    worst: float


def deliveries(run: FleetRun) -> list[Delivery]:
    """Per kind of event: publish (just before the simulator was asked to raise it) to its
    arrival on each stream of its tenant, in ms."""
    arrivals: dict[str, list[float]] = {}
    streams: Counter[int] = Counter()
    for result in run.results:
        for key, times in result.arrivals.items():
            arrivals.setdefault(key, []).extend(times)
        streams.update(result.streams_by_tenant)
    rows = []
    for kind, name in (("alert", "alert → every stream of its hotel"), ("ai", "AI suggestion")):
        keys = [k for k in run.published if k.startswith(kind + ":")]
        latencies = [t - run.published[k][0] for k in keys for t in arrivals.get(k, ()) if t >= 0]
        p50, p95, p99 = percentiles(latencies)
        rows.append(
            Delivery(
                kind=name,
                events=len(keys),
                expected=sum(streams[run.published[k][1]] for k in keys),
                arrived=len(latencies),
                p50=p50,
                p95=p95,
                p99=p99,
                worst=max(latencies, default=float("nan")) * 1000,
            )
        )
    return rows


def streams_held(run: FleetRun) -> int:
    return sum(sum(r.streams_by_tenant.values()) for r in run.results)


def streams_ended(run: FleetRun) -> Counter[str]:
    ended: Counter[str] = Counter()
    for result in run.results:
        ended.update(result.streams_ended)
    return ended


def met(run: FleetRun) -> bool:
    return all(row.met for row in route_rows(run))


def broken(run: FleetRun) -> list[str]:
    """What missed: each route over its target or its error budget."""
    found = []
    for row in route_rows(run):
        if row.target is not None and not row.p95 < row.target:
            found.append(f"{row.route} p95 {row.p95:,.0f} ms (target < {row.target:,.0f} ms)")
        if row.error_rate > MAX_ERROR_RATE:
            found.append(f"{row.route} errors {row.error_rate:.1%}")
    return found


# --- text ------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None or value != value:  # NaN: no samples
        return NONE
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or not b or a != a or b != b:
        return NONE
    return f"{a / b:.2f}"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def run_markdown(run: FleetRun, png: str | None) -> str:
    live = run.live
    live_rate = live["requests"] / live["seconds"] if live.get("seconds") else 0.0
    rows = route_rows(run)
    total = sum(r.requests for r in rows)
    rate = total / run.seconds
    opening = percentiles(run.open_latencies)
    lines = [
        f"### {run.tenants} tenants {X} {run.devices_per_tenant} devices "
        f"({run.tenants * run.devices_per_tenant:,} desktops), rates {X}{run.multiplier:g}, "
        f"{run.seconds:g} s, BFF_WORKERS={run.workers} — "
        f"{'**every target met**' if met(run) else '**missed**: ' + '; '.join(broken(run))}",
        "",
        f"Setup: {run.devices:,} devices enrolled and signed in in {run.signin_s:.1f} s"
        f" ({run.devices / run.signin_s if run.signin_s else 0:.0f}/s; failed:"
        f" {sum(run.signin_failed.values())}), hotels read in {run.demo_s:.1f} s,"
        f" {_opened(run):,} streams opened in {run.open_s:.1f} s (failed:"
        f" {sum(n for k, n in run.streams_failed.items() if k != 'retried')}, retried:"
        f" {run.streams_failed.get('retried', 0)}; one stream p50/p95"
        f" {_ms(opening[0])}/{_ms(opening[1])} ms).",
        "",
        f"Baselines, same run, streams open: bare `/health/live` (c=32, closed loop) "
        f"{live_rate:,.0f} req/s, p50/p95 {_ms(live.get('p50'))}/{_ms(live.get('p95'))} ms;"
        f" the fleet's {rate:,.1f} req/s is **{_ratio(rate, live_rate)}**"
        " of it. Upstream = the simulator's own p95 for the slowest upstream the route waits for"
        " (its call log, same window).",
        "",
        "| route | requests | req/s | errors | p50 ms | p95 ms | p99 ms | spec p95 | met |"
        " p95 ÷ live p95 | upstream p95 ms | p95 ÷ upstream |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        target = f"< {row.target:,.0f}" if row.target else NONE
        lines.append(
            f"| {row.route} | {row.requests:,} | {row.rate:.2f} | {row.errors} "
            f"({row.error_rate:.1%}) | {_ms(row.p50)} | {_ms(row.p95)} | {_ms(row.p99)} |"
            f" {target} | {'✓' if row.met else '✗'} | {_ratio(row.p95, live.get('p95'))} |"
            f" {_ms(row.upstream_p95)} | {_ratio(row.p95, row.upstream_p95)} |"
        )
    codes = error_codes(run)
    if codes:
        lines += ["", "Errors: " + ", ".join(f"{k} {X}{n}" for k, n in codes.most_common(8))]
    lines += [
        "",
        "| SSE, ms | events | deliveries / expected | p50 | p95 | p99 | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in deliveries(run):
        lines.append(
            f"| {d.kind} | {d.events} | {d.arrived:,} / {d.expected:,} | {_ms(d.p50)} |"
            f" {_ms(d.p95)} | {_ms(d.p99)} | {_ms(d.worst)} |"
        )
    ended = streams_ended(run)
    keepalives = sum(r.keepalives for r in run.results)
    lines += [
        "",
        f"Streams held to the end: {streams_held(run):,} of {_opened(run):,}"
        f" (ended early: {dict(ended) or 'none'}); {keepalives:,} keep-alives read.",
        "",
        resources_line(run),
    ]
    if run.profile:
        lines += ["", run.profile + "."]
    if png:
        lines += ["", f"![latency over time, {run.label}]({png})"]
    return "\n".join(lines)


def _opened(run: FleetRun) -> int:
    return len(run.open_latencies)


def resources_line(run: FleetRun) -> str:
    res = run.resources
    inside = [i for i, at in enumerate(res.at) if at <= run.seconds + 0.5]  # not the drain

    def mean(series: list[float]) -> float:
        return _mean([series[i] for i in inside])

    bff, sim, load = mean(res.bff_cores), mean(res.sim_cores), mean(res.load_cores)
    other = mean(res.busy_cores) - bff - sim - load
    rss = f"{res.bff_rss_mib[0]:,.0f} → {max(res.bff_rss_mib):,.0f}" if res.bff_rss_mib else NONE
    lag = max((r.lag_ms for r in run.results), default=(0.0, 0.0))
    return (
        f"The 2 cores, mean over the window (cores): BFF {bff:.2f} (peak"
        f" {max(res.bff_cores, default=float('nan')):.2f}), simulator {sim:.2f}, load"
        f" generators {load:.2f} ({run.loaders} processes), other (Postgres, Redis, the"
        f" machine's other work) {other:.2f}. BFF RSS {rss} MiB (all its processes). The load"
        f" generators started their tasks late by p95 {lag[0]:.1f} ms (max {lag[1]:.1f} ms)."
    )


def ceiling_markdown(runs: list[FleetRun]) -> str:
    """The largest fleet with every target met, and what broke first beyond it."""
    served = [r for r in runs if met(r)]
    failed = [r for r in runs if not met(r)]
    best = max(served, key=lambda r: r.tenants * r.devices_per_tenant, default=None)
    lines = [
        "**Ceiling**: "
        + (
            f"{best.label} ({best.tenants * best.devices_per_tenant:,} desktops) met every target"
            if best
            else "no measured size met every target"
        )
        + "."
    ]
    beyond = [r for r in failed if best is None or r.tenants > best.tenants]
    if beyond:
        first = min(beyond, key=lambda r: r.tenants)
        lines.append(f"At {first.label} the first to break: {'; '.join(broken(first))}.")
    return " ".join(lines)


def replace_section(text: str, section: str, name: str) -> str:
    """``section`` between ``<!-- name:begin -->`` and ``<!-- name:end -->``: replaced where
    the markers are, else appended."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{section.strip()}\n{end}\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        return head + block.rstrip("\n") + tail
    return text.rstrip("\n") + "\n\n" + block


# --- the plot --------------------------------------------------------------------------------


def plot(run: FleetRun, path: Path) -> None:
    """p95 per time bin for each route (log scale, targets dotted), and below it the BFF's
    CPU and RSS over the same window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(1.0, run.seconds / 30)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True, height_ratios=(3, 2))
    for route in ROUTES:
        bins: dict[int, list[float]] = {}
        for s in run.samples:
            if s.route == route and 200 <= s.status < 300:
                bins.setdefault(int(s.at // width), []).append(s.latency)
        if not bins:
            continue
        xs = sorted(bins)
        ys = [percentiles(bins[x])[1] for x in xs]
        (line,) = top.plot([(x + 0.5) * width for x in xs], ys, marker=".", label=route)
        if route in SPEC_P95_MS:
            top.axhline(SPEC_P95_MS[route], color=line.get_color(), linestyle=":", linewidth=1)
    for axis in (top, bottom):
        axis.axvline(run.seconds, color="black", linewidth=0.8, linestyle="--")
    top.set_yscale("log")
    top.set_ylabel(f"p95 per {width:g} s, ms (dotted: spec)")
    top.set_title(
        f"Fleet: {run.label} desktops, rates {X}{run.multiplier:g}, BFF_WORKERS={run.workers}"
    )
    top.legend(fontsize=7, ncol=3)
    top.grid(True, which="both", alpha=0.3)
    res = run.resources
    bottom.plot(res.at, res.bff_cores, label="BFF cores", color="tab:red")
    bottom.plot(res.at, res.busy_cores, label="machine busy cores", color="tab:gray")
    bottom.set_ylabel("cores")
    bottom.set_xlabel("seconds into the window (dashed: its end; later: requests draining)")
    rss = bottom.twinx()
    rss.plot(res.at, res.bff_rss_mib, label="BFF RSS MiB", color="tab:blue")
    rss.set_ylabel("MiB")
    rss.set_ylim(bottom=0)
    bottom.set_ylim(bottom=0)
    bottom.legend(loc="upper left", fontsize=7)
    rss.legend(loc="upper right", fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
