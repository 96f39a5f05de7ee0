"""The desktop's TypeScript types (clients/desktop-types) are generated from the document the
service serves, and ``./ops/stack types --check`` fails when the committed files are stale:
the snapshot (pure Python), then the generated ``.d.ts`` and the contract's compile-time
assertions (only with Node)."""

import copy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from ops.localstack import types
from ops.localstack.procs import ROOT, StackError
from tests.support.fixtures import ServiceFactory

needs_node = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="Node is not installed: only the snapshot is checked",
)


@pytest.fixture(scope="module")
def live() -> dict[str, Any]:
    return types.live_document()


def _with_alert_field(document: dict[str, Any], name: str) -> dict[str, Any]:
    """``document`` with one more (optional) field in the ``alert`` event's data."""
    changed = copy.deepcopy(document)
    alert = changed["components"]["schemas"]["SseEvent_AlertData"]
    alert["properties"][name] = {"type": "string"}
    return changed


def _package_copy(tmp_path: Path) -> Path:
    """The committed package in a folder of its own, sharing the installed node_modules."""
    package = tmp_path / "desktop-types"
    shutil.copytree(types.PACKAGE, package, ignore=shutil.ignore_patterns("node_modules"))
    modules = types.PACKAGE / "node_modules"
    if modules.exists():
        (package / "node_modules").symlink_to(modules, target_is_directory=True)
    return package


def test_the_snapshot_is_what_the_service_serves(start_bff: ServiceFactory) -> None:
    bff = start_bff(BFF_ENABLE_TEST_ROUTES="0")
    served = httpx.get(f"{bff.url}/openapi.json").json()
    committed = (types.PACKAGE / types.SNAPSHOT).read_text(encoding="utf-8")
    assert committed == types.render(served), "run ./ops/stack types"


def test_the_document_names_every_stream_event(live: dict[str, Any]) -> None:
    schemas = live["components"]["schemas"]
    union = schemas["SseEvent"]
    assert set(union["discriminator"]["mapping"]) == {
        "ai.suggestion",
        "ai.suggestion.invalidated",
        "alert",
        "alert.resolved",
        "dashboard.hint",
        "session",
    }
    assert "tenantId" not in schemas["SseEvent_AlertData"]["properties"]
    assert {"alertId", "propertyId"} <= set(schemas["SseEvent_AlertData"]["required"])
    assert schemas["SseEvent_SessionData"]["required"] == ["kind"]  # reason may be absent
    stream = live["paths"]["/bff/backoffice/v1/sse/stream"]["get"]["responses"]["200"]
    media = stream["content"]["text/event-stream"]
    assert media["x-sse-events"] == {"$ref": "#/components/schemas/SseEvent"}


def test_the_committed_files_pass_the_check(live: dict[str, Any]) -> None:
    assert types.check(live) == []


def test_a_changed_schema_makes_the_snapshot_stale(live: dict[str, Any]) -> None:
    problems = types.check(_with_alert_field(live, "note"))
    assert len(problems) == 1
    assert "clients/desktop-types/openapi.json is stale (run ./ops/stack types)" in problems[0]
    assert '+          "note": {' in problems[0]  # the diff says what changed


def test_a_missing_snapshot_fails_the_check(live: dict[str, Any], tmp_path: Path) -> None:
    package = _package_copy(tmp_path)
    (package / types.SNAPSHOT).unlink()
    assert "openapi.json is missing" in types.check(live, package)[0]


@needs_node
def test_types_not_regenerated_fail_the_check(live: dict[str, Any], tmp_path: Path) -> None:
    package = _package_copy(tmp_path)
    changed = _with_alert_field(live, "note")
    (package / types.SNAPSHOT).write_text(types.render(changed), encoding="utf-8")
    problems = types.check(changed, package)
    assert len(problems) == 1
    assert "api.d.ts is stale" in problems[0]
    assert "+            note?: string;" in problems[0]
    types.regenerate(changed, package)
    assert types.check(changed, package) == []


@needs_node
def test_a_renamed_field_the_desktop_reads_fails_the_typecheck(
    live: dict[str, Any], tmp_path: Path
) -> None:
    package = _package_copy(tmp_path)
    changed = copy.deepcopy(live)
    alert = changed["components"]["schemas"]["SseEvent_AlertData"]
    alert["properties"]["alarmId"] = alert["properties"].pop("alertId")
    alert["required"] = ["alarmId" if f == "alertId" else f for f in alert["required"]]
    with pytest.raises(StackError, match="alertId"):
        types.regenerate(changed, package)


def test_the_stack_command_checks_the_committed_files() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ops.localstack", "types", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "desktop types are current" in done.stdout
