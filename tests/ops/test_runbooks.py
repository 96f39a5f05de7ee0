"""The runbooks and alert rules stay true to the failure catalogue and to the service.

- Every runbook FAILURE_MODES §1 names has its file in ``ops/runbooks/`` (checked against the
  spec when it is at hand; always against the list kept in ``ops/runbooks/README.md``, since a
  clean clone has no spec).
- Every ``bff_*`` metric an alert rule or a runbook names is one the service exports, with the
  name a scrape shows (counters end in ``_total``, histograms add ``_bucket``/``_sum``/``_count``),
  except the few proposed in ``PROPOSED`` — metrics the rules need and the service lacks.
- The alert files parse, and every rule names a runbook that exists.

The exported names come from the service's own registry: ``edge.metrics.Metrics`` plus every
instrument set the edge builds on it lazily (``*_instruments(metrics)``, ``audit_gauges``...),
the same objects a running instance registers (so a new metric needs no change here).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from edge.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "ops" / "runbooks"
ALERTS = ROOT / "ops" / "deploy" / "alerts"
SPEC = Path(os.environ.get("BFF_SPEC_DIR", ROOT.parent / "shared" / "spec"))

SECTIONS = ("## Symptoms", "## Detection", "## Confirm", "## Mitigation", "## Verification")
# A metric name; not a regex fragment of one (``'^bff_sse_(events|cut)_total'`` in a grep).
METRIC = re.compile(r"\bbff_[a-z][a-z_]*[a-z](?![a-z_(])")
# A catalogue row: "F-21Outbox grows…platform/outbox-backlog" (one row per line in the spec).
SPEC_ROW = re.compile(r"^(F-\d+)\D.*?((?:bff-backoffice|bff|platform)/[a-z0-9-]+)\s*$")
INDEX_ROW = re.compile(r"^\| (F-\d+) \|[^|]*\| \[`([^`]+)`\]\(([^)]+)\) \|([^|]*)\|")

# Metrics the alert rules and runbooks need that the service does not export yet (the lead adds
# them; each is described where it is used, in ops/deploy/alerts/*.yaml).
PROPOSED = frozenset(
    {
        "bff_synthetic_dpop_replay_accepted_total",  # F-28: the synthetic replay prober's
        "bff_force_logout_seconds",  # F-31: force-logout end to end
        "bff_force_logout_seconds_bucket",
    }
)


def instrument_accessors() -> Iterator[Callable[[Metrics], object]]:
    """The edge's lazily built instrument sets: module-level functions ``f(metrics: Metrics)``
    of the modules that keep one set per ``Metrics`` (``WeakKeyDictionary[Metrics, ...]``)."""
    for path in sorted((ROOT / "edge").rglob("*.py")):
        if "WeakKeyDictionary[Metrics" not in path.read_text():
            continue
        module = importlib.import_module(".".join(path.relative_to(ROOT).with_suffix("").parts))
        for value in vars(module).values():
            if inspect.isfunction(value) and value.__module__ == module.__name__:
                params = list(inspect.signature(value).parameters.values())
                if len(params) == 1 and params[0].annotation in ("Metrics", Metrics):
                    yield value


def exported_names() -> set[str]:
    """Every sample name a scrape of the service can show."""
    metrics = Metrics()
    for accessor in instrument_accessors():
        accessor(metrics)
    names: set[str] = set()
    for family in metrics.registry.collect():
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {family.name, *(f"{family.name}_{s}" for s in ("bucket", "sum", "count"))}
        else:
            names.add(family.name)
    return names


def index() -> list[tuple[str, str, str, str]]:
    """(row, runbook name, file, alert column) of ops/runbooks/README.md's table."""
    text = (RUNBOOKS / "README.md").read_text()
    return [m.groups() for line in text.splitlines() if (m := INDEX_ROW.match(line))]  # type: ignore[misc]


def runbook_files() -> list[Path]:
    return sorted(p for p in RUNBOOKS.glob("*.md") if p.name != "README.md")


def alert_rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(ALERTS.glob("*.yaml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                yield path, rule


def test_index_lists_each_runbook_once_under_its_file_name() -> None:
    rows = index()
    assert rows, "ops/runbooks/README.md has no table rows"
    names = [name for _, name, _, _ in rows]
    assert len(names) == len(set(names)), "a runbook is listed twice"
    for _, name, file, _ in rows:
        assert file == name.replace("/", "__") + ".md"
    assert {file for _, _, file, _ in rows} == {p.name for p in runbook_files()}


@pytest.mark.parametrize("path", runbook_files(), ids=lambda p: p.stem)
def test_runbook_has_every_section_and_stays_short(path: Path) -> None:
    text = path.read_text()
    for section in SECTIONS:
        assert section in text, f"{path.name}: no {section!r}"
    assert 30 <= len(text.splitlines()) <= 70, f"{path.name}: {len(text.splitlines())} lines"
    name = path.stem.replace("__", "/")
    assert text.startswith(f"# {name} — "), f"{path.name}: title must start with its name"


def test_index_matches_the_failure_catalogue() -> None:
    spec = SPEC / "FAILURE_MODES.md"
    if not spec.exists():
        pytest.skip(f"no spec at {SPEC} (clean clone): checked against the README list only")
    catalogue = [
        m.groups() for line in spec.read_text().splitlines() if (m := SPEC_ROW.match(line))
    ]
    assert len(catalogue) == 41, "the catalogue's format changed: fix SPEC_ROW"
    assert [(row, name) for row, name, _, _ in index()] == catalogue


def test_every_metric_named_is_exported() -> None:
    exported = exported_names()
    named: dict[str, set[str]] = {}
    for path in [*runbook_files(), RUNBOOKS / "README.md", *sorted(ALERTS.glob("*.yaml"))]:
        for metric in METRIC.findall(path.read_text()):
            named.setdefault(metric, set()).add(path.name)
    unknown = {m: sorted(files) for m, files in named.items() if m not in exported | PROPOSED}
    assert not unknown, f"not exported by the service: {unknown}"
    assert set(named) >= PROPOSED, f"proposed but unused: {sorted(PROPOSED - set(named))}"


def test_alert_rules_parse_and_name_existing_runbooks() -> None:
    names = []
    for path, rule in alert_rules():
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), rule
        if "record" in rule:
            continue
        names.append(rule["alert"])
        assert rule["labels"]["severity"] in {"page", "ticket"}, rule["alert"]
        runbook = ROOT / rule["annotations"]["runbook"]
        assert runbook.is_file(), f"{path.name} {rule['alert']}: no {runbook}"
    assert len(names) == len(set(names)), "two alert rules share a name"


def test_every_alert_the_index_names_exists_and_points_back() -> None:
    rules = {rule["alert"]: rule for _, rule in alert_rules() if "alert" in rule}
    for row, _, file, column in index():
        for alert in re.findall(r"`(\w+)`", column):
            assert alert in rules, f"{row}: no alert rule {alert}"
            assert rules[alert]["labels"]["row"] == row
            assert rules[alert]["annotations"]["runbook"] == f"ops/runbooks/{file}"
            assert alert in (RUNBOOKS / file).read_text(), f"{file} does not name {alert}"


def test_drill_column_matches_the_drill_catalogue() -> None:
    """A row's runbook offers `./ops/chaos drill F-n` exactly when that drill exists, and says
    "not reproducible" exactly for the rows ops/drills lists as such."""
    from ops.drills.catalogue import NOT_REPRODUCIBLE, drills

    drilled = {drill.row for drill in drills()}
    for row, _, file, _ in index():
        offered = bool(re.search(rf"\./ops/chaos drill {row}\b", (RUNBOOKS / file).read_text()))
        assert offered == (row in drilled), f"{file}: drill {row} offered={offered}"
        assert (row in NOT_REPRODUCIBLE) == (row not in drilled), row
