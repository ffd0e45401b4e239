"""Config.from_env: defaults, each TAKTFLOW_* variable, refusals naming variable and value."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from taktflow.config import DEV_SECRET_KEY, Config, ConfigError

CONFIG_VARS = [f"TAKTFLOW_{f.name.upper()}" for f in fields(Config) if f.name != "extra"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in an empty folder with no TAKTFLOW_* variable from the host."""
    monkeypatch.chdir(tmp_path)
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_defaults_put_sqlite_in_the_instance_folder(in_tmp: Path) -> None:
    config = Config.from_env({})

    assert config.instance_path == str(in_tmp / "instance")
    assert config.database_url == f"sqlite:///{in_tmp / 'instance' / 'taktflow.db'}"
    assert config.is_sqlite is True
    assert config.env == "production"
    assert config.secret_key == ""
    assert config.message_ttl_seconds == 3600.0
    assert config.worker_interval_seconds == 1.0
    assert config.script_cpu_seconds == 2.0
    assert config.workflow_cache_size == 512
    assert config.embedded_worker is True
    assert config.workflows_path == "workflows"
    assert config.extra == {}


def test_an_empty_database_url_means_the_default(in_tmp: Path) -> None:
    config = Config.from_env({"TAKTFLOW_DATABASE_URL": ""})
    assert config.database_url == f"sqlite:///{in_tmp / 'instance' / 'taktflow.db'}"


def test_the_instance_path_moves_the_default_database(tmp_path: Path) -> None:
    config = Config.from_env({"TAKTFLOW_INSTANCE_PATH": str(tmp_path / "state")})

    assert config.instance_path == str(tmp_path / "state")
    assert config.database_url == f"sqlite:///{tmp_path / 'state' / 'taktflow.db'}"


def test_every_variable_is_parsed() -> None:
    config = Config.from_env(
        {
            "TAKTFLOW_DATABASE_URL": "sqlite:////srv/plant/taktflow.db",
            "TAKTFLOW_SECRET_KEY": "s3cret-key",
            "TAKTFLOW_ENV": "development",
            "TAKTFLOW_INSTANCE_PATH": "/srv/plant",
            "TAKTFLOW_MESSAGE_TTL_SECONDS": "90",
            "TAKTFLOW_WORKER_INTERVAL_SECONDS": "0.25",
            "TAKTFLOW_SCRIPT_CPU_SECONDS": "1.5",
            "TAKTFLOW_WORKFLOW_CACHE_SIZE": "64",
            "TAKTFLOW_EMBEDDED_WORKER": "false",
            "TAKTFLOW_WORKFLOWS_PATH": "/srv/plant/workflows",
            "TAKTFLOW_UNKNOWN": "ignored",
        }
    )

    assert config.database_url == "sqlite:////srv/plant/taktflow.db"
    assert config.secret_key == "s3cret-key"
    assert config.env == "development"
    assert config.instance_path == "/srv/plant"
    assert config.message_ttl_seconds == 90.0
    assert isinstance(config.message_ttl_seconds, float)
    assert config.worker_interval_seconds == 0.25
    assert config.script_cpu_seconds == 1.5
    assert config.workflow_cache_size == 64
    assert isinstance(config.workflow_cache_size, int)
    assert config.embedded_worker is False
    assert config.workflows_path == "/srv/plant/workflows"
    assert config.extra == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
        ("", False),
    ],
)
def test_embedded_worker_booleans(raw: str, expected: bool) -> None:
    assert Config.from_env({"TAKTFLOW_EMBEDDED_WORKER": raw}).embedded_worker is expected


def test_the_process_environment_is_read_when_no_mapping_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAKTFLOW_WORKFLOW_CACHE_SIZE", "7")
    monkeypatch.setenv("TAKTFLOW_ENV", "testing")

    config = Config.from_env()

    assert (config.workflow_cache_size, config.env) == (7, "testing")


def test_overrides_win_over_the_environment_and_unknown_ones_go_to_extra() -> None:
    config = Config.from_env(
        {"TAKTFLOW_ENV": "development", "TAKTFLOW_WORKFLOW_CACHE_SIZE": "7"},
        overrides={"env": "testing", "workflow_cache_size": 3, "plant": "P1"},
    )

    assert config.env == "testing"
    assert config.workflow_cache_size == 3
    assert config.extra == {"plant": "P1"}


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match=re.escape("TAKTFLOW_ENV='bogus'")):
        Config.from_env({}, overrides={"env": "bogus"})


NOT_A_NUMBER = "expected a number"
NOT_POSITIVE = "must be greater than 0"
BAD_ENV = "expected production, development or testing"


@pytest.mark.parametrize(
    ("variable", "raw", "reason"),
    [
        ("TAKTFLOW_MESSAGE_TTL_SECONDS", "an hour", NOT_A_NUMBER),
        ("TAKTFLOW_MESSAGE_TTL_SECONDS", "0", NOT_POSITIVE),
        ("TAKTFLOW_MESSAGE_TTL_SECONDS", "-5", NOT_POSITIVE),
        ("TAKTFLOW_WORKER_INTERVAL_SECONDS", "", NOT_A_NUMBER),
        ("TAKTFLOW_WORKER_INTERVAL_SECONDS", "0.0", NOT_POSITIVE),
        ("TAKTFLOW_SCRIPT_CPU_SECONDS", "2s", NOT_A_NUMBER),
        ("TAKTFLOW_WORKFLOW_CACHE_SIZE", "1.5", "expected a whole number"),
        ("TAKTFLOW_WORKFLOW_CACHE_SIZE", "0", NOT_POSITIVE),
        ("TAKTFLOW_EMBEDDED_WORKER", "maybe", "expected true or false"),
        ("TAKTFLOW_ENV", "staging", BAD_ENV),
        ("TAKTFLOW_ENV", "Production", BAD_ENV),
        (
            "TAKTFLOW_DATABASE_URL",
            "mysql://u@127.0.0.1/plant",
            "unsupported database 'mysql' (supported: sqlite, postgresql)",
        ),
        (
            "TAKTFLOW_DATABASE_URL",
            "postgres://u@127.0.0.1/plant",
            "unsupported database 'postgres'",
        ),
        ("TAKTFLOW_DATABASE_URL", "instance/taktflow.db", "not a database URL"),
    ],
)
def test_bad_values_name_the_variable_and_the_value(variable: str, raw: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env({variable: raw})

    assert str(caught.value).startswith(f"{variable}={raw!r}: {reason}")


@pytest.mark.parametrize(
    "variable",
    [
        "TAKTFLOW_MESSAGE_TTL_SECONDS",
        "TAKTFLOW_WORKER_INTERVAL_SECONDS",
        "TAKTFLOW_SCRIPT_CPU_SECONDS",
    ],
)
def test_nan_is_not_a_usable_number(variable: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"{variable}='nan'")):
        Config.from_env({variable: "nan"})


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://planner:pw@db.plant:5432/taktflow",
            "postgresql+psycopg://planner:pw@db.plant:5432/taktflow",
        ),
        ("postgresql://postgres@127.0.0.1/test", "postgresql+psycopg://postgres@127.0.0.1/test"),
        (
            "postgresql+psycopg://postgres@127.0.0.1/test",
            "postgresql+psycopg://postgres@127.0.0.1/test",
        ),
        ("sqlite:////srv/plant/taktflow.db", "sqlite:////srv/plant/taktflow.db"),
    ],
)
def test_postgresql_urls_use_the_psycopg_driver(url: str, expected: str) -> None:
    config = Config.from_env({"TAKTFLOW_DATABASE_URL": url})

    assert config.database_url == expected
    assert config.is_sqlite is expected.startswith("sqlite")


def test_production_without_a_secret_key_is_refused_when_serving() -> None:
    config = Config.from_env({})
    assert config.secret_key == ""

    with pytest.raises(ConfigError) as caught:
        config.require_secret_key()

    message = str(caught.value)
    assert message.startswith("TAKTFLOW_SECRET_KEY is not set")
    assert "TAKTFLOW_ENV=development" in message


def test_production_refuses_the_development_key() -> None:
    config = Config.from_env({"TAKTFLOW_SECRET_KEY": DEV_SECRET_KEY})
    with pytest.raises(ConfigError, match="TAKTFLOW_SECRET_KEY"):
        config.require_secret_key()


def test_production_with_a_key_is_accepted() -> None:
    config = Config.from_env({"TAKTFLOW_SECRET_KEY": "a" * 64})
    config.require_secret_key()
    assert config.secret_key == "a" * 64


@pytest.mark.parametrize("env", ["development", "testing"])
def test_development_and_testing_work_without_a_key(env: str) -> None:
    config = Config.from_env({"TAKTFLOW_ENV": env})

    config.require_secret_key()

    assert config.secret_key == DEV_SECRET_KEY


def test_a_configured_key_is_kept_in_development() -> None:
    config = Config.from_env({"TAKTFLOW_ENV": "development", "TAKTFLOW_SECRET_KEY": "mine"})
    assert config.secret_key == "mine"


def test_the_mqtt_url_defaults_to_a_local_broker_and_is_checked() -> None:
    assert Config.from_env({}).mqtt_url == "mqtt://127.0.0.1:1883"
    assert Config.from_env({"TAKTFLOW_MQTT_URL": ""}).mqtt_url == "mqtt://127.0.0.1:1883"
    url = "mqtts://broker.plant:8883"
    assert Config.from_env({"TAKTFLOW_MQTT_URL": url}).mqtt_url == url
    for bad in ("tcp://broker:1883", "mqtt://", "mqtt://broker:port", "broker.plant"):
        with pytest.raises(ConfigError, match=r"TAKTFLOW_MQTT_URL=.*expected mqtt://host:port"):
            Config.from_env({"TAKTFLOW_MQTT_URL": bad})
