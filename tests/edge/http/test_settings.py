"""Settings: defaults, and a wrong value stops start-up with one line naming the variable."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.settings import (
    ENV_NAMES,
    UNPREFIXED,
    Settings,
    SettingsError,
    load_settings,
    markdown_table,
    redact_url,
    variables,
)

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.bus_kind == "embedded"


def test_every_field_has_one_documented_variable() -> None:
    assert set(ENV_NAMES) == set(Settings.__struct_fields__)
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)
    assert {"PORT", "SIM_URL", "PUBSUB_EMULATOR_HOST"} == {n.upper() for n in UNPREFIXED}
    assert all(
        name.startswith("BFF_") for field, name in ENV_NAMES.items() if field not in UNPREFIXED
    )
    undocumented = [v.name for v in variables() if not v.meaning]
    assert not undocumented, f"fields without Meta(description=...): {undocumented}"


def test_variable_name_is_derived_from_the_field() -> None:
    settings = load_settings({"BFF_DASHBOARD_PARTIAL_TTL_S": "7", "SIM_URL": "http://sim:1"})
    assert settings.dashboard_partial_ttl_s == 7.0
    assert settings.sim_url == "http://sim:1"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("PORT", "eighty", "Expected `int`"),
        ("PORT", "70000", "<= 65535"),
        ("BFF_BUS", "kafka", "Invalid enum value"),
        ("BFF_KEEPALIVE_TIMEOUT_S", "-1", "> 0"),
        ("BFF_DATABASE_URL", "mysql://u:hunter2@db/x", "must start with"),
        ("BFF_REDIS_PREFIX", "a b", "matching regex"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    message = str(info.value)
    assert message.startswith(f"{variable}=")
    assert expected in message
    assert "hunter2" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bff:hunter2@db:5432/x", "postgresql://bff:***@db:5432/x"),
        (
            "postgresql://bff@db/x?sslmode=verify-full&password=hunter2&sslkey=/k.pem",
            "postgresql://bff@db/x?sslmode=verify-full&password=***&sslkey=/k.pem",
        ),
        (
            "postgresql://bff@db/x?sslpassword=hunter2&application_name=bff",
            "postgresql://bff@db/x?sslpassword=***&application_name=bff",
        ),
        (
            "postgresql:///x?host=/run/pg&PassWord=hun@ter2",
            "postgresql:///x?host=/run/pg&PassWord=***",
        ),
        ("postgresql://db/x?pass%77ord=hunter2", "postgresql://db/x?pass%77ord=***"),
        ("postgresql://db/x?passfile=/hunter2/.pgpass", "postgresql://db/x?passfile=***"),
        (
            "postgresql://u:hunter2@db/x?password=hunter2&options=-c%20a=1",
            "postgresql://u:***@db/x?password=***&options=-c%20a=1",
        ),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "unix:///run/redis.sock?db=0&password=hunter2",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        ("rediss://cache:6380/0?auth_token=hunter2", "rediss://cache:6380/0?auth_token=***"),
        ("host=db password='hunter 2' user=bff", "host=db password=*** user=bff"),
        ("postgresql://db/x?sslcert=/c.pem&sslrootcert=/r.pem", None),
        ("http://127.0.0.1:8090", None),
    ],
)
def test_redact_url_hides_every_password(url: str, shown: str | None) -> None:
    """Issue #11 finding 10: URLs logged at start-up keep no password, in the userinfo or in a
    password-like query parameter (libpq reads ``password``/``sslpassword`` from the query)."""
    redacted = redact_url(url)
    assert redacted == (url if shown is None else shown)
    assert "hunter" not in redacted


def test_process_refuses_to_start_with_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge"],
        env={"PORT": "eighty", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PORT='eighty' is invalid" in lines[0]
    assert "Traceback" not in result.stderr


def _readme_table() -> list[str]:
    """The README's settings table: from its header row to the first line that is not a row."""
    lines = README.read_text().splitlines()
    start = lines.index("| variable | default | meaning |")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_readme_table_is_generated_from_the_settings() -> None:
    documented = _readme_table()
    names = {n for row in documented for n in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}
    assert names == set(ENV_NAMES.values()), (
        f"README § Settings: missing {sorted(set(ENV_NAMES.values()) - names)}, "
        f"unknown {sorted(names - set(ENV_NAMES.values()))}"
    )
    stale = sorted(set(documented) ^ set(markdown_table().splitlines()))
    assert documented == markdown_table().splitlines(), (
        "README § Settings disagrees with edge/settings.py (defaults or meanings) in these rows; "
        "replace the table with the output of `python -m edge.settings --markdown`:\n"
        + "\n".join(stale)
    )


def test_markdown_command_prints_the_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge.settings", "--markdown"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == markdown_table()


def test_a_variable_can_be_read_from_a_file_and_never_from_both(tmp_path: Path) -> None:
    """Secrets mounted as files (Cloud Run Secret Manager volumes): ``<NAME>_FILE``."""
    secret = tmp_path / "database-url"
    secret.write_text("postgresql://bff:s3cret@10.0.0.5:5432/bff\n")
    settings = load_settings({"BFF_DATABASE_URL_FILE": str(secret)})
    assert settings.database_url == "postgresql://bff:s3cret@10.0.0.5:5432/bff"
    both = {"BFF_DATABASE_URL_FILE": str(secret), "BFF_DATABASE_URL": "postgresql://x@y/z"}
    with pytest.raises(SettingsError, match="both set"):
        load_settings(both)
    with pytest.raises(SettingsError, match=r"BFF_REDIS_CACHE_URL_FILE=.*cannot be read"):
        load_settings({"BFF_REDIS_CACHE_URL_FILE": str(tmp_path / "missing")})
    secret.write_text("mysql://nope")  # the file's value is checked like any other
    with pytest.raises(SettingsError) as refused:
        load_settings({"BFF_DATABASE_URL_FILE": str(secret)})
    assert "BFF_DATABASE_URL" in str(refused.value)
