"""Settings: defaults, and a wrong value stops start-up with one line naming the variable."""

import subprocess
import sys

import pytest

from edge.settings import ENV_NAMES, Settings, SettingsError, load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})
    assert settings.port == 8080
    assert settings.bus_kind == "embedded"


def test_every_field_has_one_variable() -> None:
    assert set(ENV_NAMES) == set(Settings.__struct_fields__)
    assert len(set(ENV_NAMES.values())) == len(ENV_NAMES)


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


def test_readme_documents_every_variable() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    missing = [name for name in ENV_NAMES.values() if f"`{name}`" not in readme]
    assert not missing, f"README settings table lacks {missing}"
