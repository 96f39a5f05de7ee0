"""ops/deploy matches DEPLOYMENT_TOPOLOGY and the code it deploys.

Neither gcloud nor the Terraform providers can check these offline (ops/deploy/validate.sh says
what it could run), so the values the topology fixes are asserted here: sizing and scaling of the
Cloud Run service, its probes, the settings it passes (they must load in production mode), the
migrate job's command, and the Terraform's tiers, sizes, HA, regions, Pub/Sub names (the code's
own constants) and dead-letter retention (F-38).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from edge.bus.port import CONSUMED_TOPICS, PUBLISHED_TOPICS
from edge.bus.pubsub import DEAD_LETTER_TOPIC
from edge.settings import SettingsError, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "ops" / "deploy"
VARS = {"PROJECT_ID": "melmastoon-prod", "REGION": "asia-south1", "IMAGE": "img:1"}


def manifest(name: str) -> dict[str, Any]:
    """A Cloud Run manifest, its ``${VAR}`` placeholders filled as the README's envsubst does."""
    text = (DEPLOY / "cloudrun" / name).read_text()
    left = set(re.findall(r"\$\{(\w+)\}", text)) - set(VARS)
    assert not left, f"{name}: placeholders the README does not fill: {left}"
    for var, value in VARS.items():
        text = text.replace("${" + var + "}", value)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def serving(spec: dict[str, Any]) -> dict[str, Any]:
    """The container that serves (the one with a port; the other is the metrics sidecar)."""
    serving_ones: list[dict[str, Any]] = [c for c in spec["containers"] if c.get("ports")]
    (container,) = serving_ones
    assert container["name"] == "bff"
    return container


def terraform() -> str:
    return "\n".join(p.read_text() for p in sorted((DEPLOY / "terraform").glob("*.tf")))


def resource(kind: str, name: str) -> str:
    """The body of one Terraform resource block (up to the next top-level block)."""
    match = re.search(rf'^resource "{kind}" "{name}" \{{\n(.*?)^\}}', terraform(), re.M | re.S)
    assert match, f"no resource {kind}.{name}"
    return match.group(1)


def attr(body: str, name: str) -> str:
    match = re.search(rf"^\s*{name}\s*=\s*(.+?)\s*(#.*)?$", body, re.M)
    assert match, f"no attribute {name}"
    return match.group(1).strip('"')


def test_service_sizing_and_scaling_match_the_topology() -> None:
    service = manifest("service.yaml")
    assert service["apiVersion"] == "serving.knative.dev/v1" and service["kind"] == "Service"
    template = service["spec"]["template"]
    notes = template["metadata"]["annotations"]
    assert notes["autoscaling.knative.dev/minScale"] == "2"
    assert notes["autoscaling.knative.dev/maxScale"] == "20"
    assert notes["run.googleapis.com/cpu-throttling"] == "false"  # always allocated
    assert notes["run.googleapis.com/vpc-access-connector"].endswith(
        "/connectors/bff-connector-asia-south1"
    )
    spec = template["spec"]
    assert spec["containerConcurrency"] == 80
    assert spec["timeoutSeconds"] == 30
    assert spec["serviceAccountName"].startswith("bff-backoffice-sa@")
    assert serving(spec)["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert [c["name"] for c in spec["containers"]] == ["bff", "collector"]  # + metrics sidecar


def test_service_probes_use_the_health_endpoints() -> None:
    container = serving(manifest("service.yaml")["spec"]["template"]["spec"])
    assert container["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"


def test_secrets_are_mounted_files_and_the_settings_load_in_production() -> None:
    spec = manifest("service.yaml")["spec"]["template"]["spec"]
    container = serving(spec)
    mounted = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"]}
    assert mounted.keys() == volumes.keys()
    assert {"bff-backoffice-pepper", "bff-backoffice-sse-signing-key"} <= set(volumes.values())
    assert "command" not in container and "args" not in container  # the image's entry point
    env = {e["name"]: e["value"] for e in container["env"]}
    files = {n.removesuffix("_FILE"): v for n, v in env.items() if n.endswith("_FILE")}
    assert set(files) == {"BFF_DATABASE_URL", "BFF_REDIS_SESSION_URL", "BFF_REDIS_CACHE_URL"}
    assert {v.rsplit("/", 1)[0] for v in files.values()} <= set(mounted.values())
    env = {n: v for n, v in env.items() if not n.endswith("_FILE")}
    env |= {
        "BFF_DATABASE_URL": "postgresql://bff:x@10.0.0.3:5432/bff?sslmode=require",
        "BFF_REDIS_SESSION_URL": "redis://:x@10.0.0.4:6379/0",
        "BFF_REDIS_CACHE_URL": "redis://:x@10.0.0.5:6379/0",
    }
    settings = load_settings(env)
    assert settings.mode == "production" and settings.bus_kind == "pubsub"
    assert settings.workers == 2  # one per vCPU


def test_migrations_run_as_a_job_of_the_same_image() -> None:
    job = manifest("migrate-job.yaml")
    assert job["kind"] == "Job"
    task = job["spec"]["template"]["spec"]["template"]["spec"]
    (container,) = task["containers"]
    assert (
        container["image"]
        == manifest("service.yaml")["spec"]["template"]["spec"]["containers"][0]["image"]
    )
    assert container["command"] == ["/opt/venv/bin/python", "-m", "edge.migrations"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BFF_DATABASE_URL_FILE"].startswith("/secrets/database-url/")


def test_memorystore_tiers_match_the_topology() -> None:
    cache = resource("google_redis_instance", "cache")
    session = resource("google_redis_instance", "session")
    for body in (cache, session):
        assert attr(body, "tier") == "STANDARD_HA"  # standby + auto-failover
        assert attr(body, "redis_version").startswith("REDIS_7")
        assert attr(body, "region") == "var.region"
    assert attr(cache, "memory_size_gb") == "5"
    assert attr(session, "memory_size_gb") == "3"
    assert attr(cache, "name") == "bff-backoffice-cache-${var.region}"
    assert attr(session, "name") == "bff-backoffice-session-${var.region}"
    assert attr(session, '"maxmemory-policy"') == "noeviction"


def test_cloud_sql_matches_the_topology() -> None:
    primary = resource("google_sql_database_instance", "ledger")
    replica = resource("google_sql_database_instance", "ledger_dr")
    assert attr(primary, "database_version") == "POSTGRES_16"
    assert attr(primary, "tier") == "db-custom-2-8192"
    assert attr(primary, "availability_type") == "REGIONAL"
    assert attr(primary, "point_in_time_recovery_enabled") == "true"  # RPO 5 min
    assert attr(replica, "region") == "var.dr_region"
    assert attr(replica, "master_instance_name") == "google_sql_database_instance.ledger.name"
    defaults = dict(
        re.findall(r'^variable "(\w+)" \{[^}]*?default\s+=\s+"([^"]*)"', terraform(), re.M)
    )
    assert defaults["region"] == "asia-south1" and defaults["dr_region"] == "europe-west4"
    assert defaults["connector_cidr"] == "10.20.7.0/28"


def test_pubsub_names_are_the_codes_and_dead_letters_are_kept_seven_days() -> None:
    assert attr(resource("google_pubsub_topic", "events"), "name") == PUBLISHED_TOPICS[0]
    assert attr(resource("google_pubsub_topic", "dead_letter"), "name") == DEAD_LETTER_TOPIC
    inspect = resource("google_pubsub_subscription", "dead_letter")
    assert attr(inspect, "message_retention_duration") == "604800s"  # F-38: 7 d
    consumed = re.search(r'variable "consumed_topics" \{.*?default = \[(.*?)\]', terraform(), re.S)
    assert consumed and tuple(re.findall(r'"([^"]+)"', consumed.group(1))) == CONSUMED_TOPICS


def test_the_mounted_secret_files_are_what_the_service_reads_or_it_stops(tmp_path: Path) -> None:
    """The manifest's ``<VARIABLE>_FILE`` settings, the mounts under tmp_path: each URL arrives
    from its file; a missing file stops the start (one line naming the variable) instead of
    starting on the local defaults."""
    container = serving(manifest("service.yaml")["spec"]["template"]["spec"])
    env = {e["name"]: e["value"].replace("/secrets", str(tmp_path)) for e in container["env"]}
    files = {n.removesuffix("_FILE"): v for n, v in env.items() if n.endswith("_FILE")}
    urls = {
        "BFF_DATABASE_URL": "postgresql://bff:x@10.0.0.3:5432/bff",
        "BFF_REDIS_SESSION_URL": "redis://:x@10.0.0.4:6379/0",
        "BFF_REDIS_CACHE_URL": "redis://:x@10.0.0.5:6379/0",
    }
    for variable, path in files.items():
        Path(path).parent.mkdir(parents=True)
        Path(path).write_text(urls[variable] + "\n")
    settings = load_settings(env)
    assert (settings.database_url, settings.redis_session_url, settings.redis_cache_url) == (
        urls["BFF_DATABASE_URL"],
        urls["BFF_REDIS_SESSION_URL"],
        urls["BFF_REDIS_CACHE_URL"],
    )
    Path(files["BFF_REDIS_CACHE_URL"]).unlink()
    with pytest.raises(SettingsError, match="BFF_REDIS_CACHE_URL_FILE"):
        load_settings(env)
