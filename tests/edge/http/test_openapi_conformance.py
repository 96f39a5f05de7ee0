"""Schemathesis against a running BFF: what ``/openapi.json`` says is what the service does.

A BFF wired to the simulator serves its public document (no test routes); the schemathesis CLI
loads it and fuzzes every operation, signed in through the simulator's iam with a fresh DPoP
proof per request (``conformance_hooks.py``), the dashboard in both of its forms (NDJSON and
JSON). Every response must be no 5xx, a documented status, a documented media type and match
its schema; every operation must have answered 200 at least once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import ServiceFactory
from tests.support.procs import ROOT
from tests.support.sim import SimHandle

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
DASHBOARD = "/bff/backoffice/v1/dashboard"
# An SSE stream never ends, so a fuzzer cannot read a whole response: its statuses, media type
# and events are checked in tests/system/test_sse_streams.py instead.
STREAM = "/bff/backoffice/v1/sse/stream"
# Domain mutations answer 200 only for real upstream state (a pending arrival, an open folio in
# its currency, a task in a state that may move) and, for refunds and key revokes, a fresh MFA
# attestation per request: a fuzzer's ids and bodies reach their refusals (checked here like
# every response), and their 200s are checked against the schema by tests/edge/test_mutations.py
# and tests/edge/test_locks.py.
NEEDS_UPSTREAM_STATE = {
    ("POST", "/bff/backoffice/v1/reservations/{reservationId}/check-in"),
    ("POST", "/bff/backoffice/v1/reservations/{reservationId}/check-out"),
    ("POST", "/bff/backoffice/v1/folios/{folioId}/charges"),
    ("POST", "/bff/backoffice/v1/folios/{folioId}/refunds"),
    ("POST", "/bff/backoffice/v1/housekeeping/tasks/{taskId}/transition"),
    ("POST", "/bff/backoffice/v1/maintenance/work-orders/{workOrderId}/transition"),
    ("POST", "/bff/backoffice/v1/locks/{reservationId}/issue-key"),
    ("POST", "/bff/backoffice/v1/locks/{reservationId}/revoke-key"),
}
# A fixed amount of work (not a time budget), so that a run is reproducible from its seed:
# examples per operation and generation mode (positive, negative) in the fuzzing phase. A wider
# search: CONFORMANCE_MAX_EXAMPLES=200 CONFORMANCE_SEED=<n> (and a longer CONFORMANCE_DEADLINE_S).
MAX_EXAMPLES = int(os.environ.get("CONFORMANCE_MAX_EXAMPLES", "10"))
SEED = os.environ.get("CONFORMANCE_SEED", "1")
DEADLINE_S = float(os.environ.get("CONFORMANCE_DEADLINE_S", "180"))  # it takes ~30-60 s


def _schemathesis(schema_url: str, env: dict[str, str], workdir: Path) -> tuple[int, str]:
    """Run the CLI; its exit status and everything it printed."""
    argv = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        schema_url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--seed",
        SEED,
        "--no-shrink",
        "--exclude-path",
        STREAM,
    ]
    try:
        done = subprocess.run(
            argv,
            cwd=workdir,  # the CLI keeps a cache directory in its working directory
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        printed = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"schemathesis did not finish within {DEADLINE_S}s:\n{printed}")
    return done.returncode, f"{done.stdout}\n{done.stderr}"


@pytest.mark.slow
def test_the_service_conforms_to_its_openapi_document(
    start_bff: ServiceFactory, sim: SimHandle, tmp_path: Path
) -> None:
    bff = start_bff(
        SIM_URL=sim.url,
        BFF_ENABLE_TEST_ROUTES="0",  # the public document, as production serves it
        # One device makes every call: no rate limit may turn the run into a run of 429s.
        BFF_RATE_LIMIT_PER_MINUTE="100000",
        BFF_REFRESH_LIMIT_PER_DEVICE="100000",
        BFF_REFRESH_LIMIT_PER_ADDRESS="100000",
    )
    schema_url = f"{bff.url}/openapi.json"
    paths = httpx.get(schema_url).json()["paths"]
    assert DASHBOARD in paths
    assert not [p for p in paths if "/_test/" in p]
    log = tmp_path / "responses.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SCHEMATHESIS_HOOKS": "tests.edge.http.conformance_hooks",
        "CONFORMANCE_BFF_URL": bff.url,
        "CONFORMANCE_SIM_URL": sim.url,
        "CONFORMANCE_LOG": str(log),
        "NO_COLOR": "1",
    }
    started = time.monotonic()
    status, printed = _schemathesis(schema_url, env, tmp_path)
    assert status == 0, f"schemathesis exited {status}:\n{printed}"
    assert "Schema validation skipped" not in printed, printed  # the NDJSON reader is in use
    print(f"schemathesis took {time.monotonic() - started:.1f}s:\n{printed}")

    # The auth hook worked: every operation was answered 200 at least once (the mutations: were
    # called, every answer checked), the dashboard in both of its forms, so the success
    # responses were checked too and not only the refusals.
    seen = Counter(tuple(line.split(" ")) for line in log.read_text().splitlines())
    ok = {(method, path) for method, path, status, _ in seen if status == "200"}
    operations = {(m.upper(), p) for p, item in paths.items() for m in item if p != STREAM}
    assert operations >= NEEDS_UPSTREAM_STATE
    assert operations - NEEDS_UPSTREAM_STATE - ok == set(), (operations - ok, seen)
    exercised = {(method, path) for method, path, _, _ in seen}
    assert NEEDS_UPSTREAM_STATE - exercised == set(), seen
    forms = {media for (_, path, status, media) in seen if path == DASHBOARD and status == "200"}
    assert forms == {"application/json", "application/x-ndjson"}, seen
