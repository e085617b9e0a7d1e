"""Settings from MODELMON_* environment variables and .env, and the round trip through to_env()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from modelmon.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MODELMON_* variables from the caller, and no .env file unless a test writes one."""
    for name in list(os.environ):
        if name.startswith("MODELMON_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


NON_DEFAULT: dict[str, Any] = {
    "kafka_bootstrap": "k1:9093,k2:9093",
    "kafka_config": {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u"},
    "topic_prefix": "acme.",
    "topic_partitions": 12,
    "topic_replication": 3,
    "clickhouse_dsn": "http://clickhouse:8123/monitoring",
    "models_path": Path("/etc/modelmon/models"),
    "app_id": "modelmon-eu",
    "worker_data_dir": Path("/var/lib/modelmon"),
    "table_store": "rocksdb://",
    "window_seconds": 300,
    "batch_size": 50,
    "batch_within": 0.25,
    "sink_batch_size": 10,
    "sink_flush_seconds": 2.5,
    "allowed_lateness_seconds": 0,
    "retention_seconds": 3600,
    "chunk_size": 100,
    "idle_flush_seconds": 0.2,
    "window_grace_seconds": 1.5,
    "max_event_age": "30d",
    "max_future_skew": "1h",
    "max_message_bytes": 2_000_000,
    "max_features": 50,
    "max_string_chars": 100,
    "max_partial_bytes": 500_000,
    "join_max_pending": 1000,
    "shutdown_timeout": 2.5,
    "startup_timeout": 15.0,
    "broker_session_timeout": 10.0,
    "commit_interval": 0.5,
    "producer_linger": 0.05,
    "web_port": 6066,
    "webhooks": [
        {"url": "https://hooks.example.com/a", "format": "slack", "secret": "s3cret", "kinds": ["alerts"]},
        {"url": "http://airflow:8080/trigger", "timeout_seconds": 2.0, "max_attempts": 3},
    ],
    "webhook_queue_size": 50,
    "log_level": "debug",
}


def test_non_default_example_covers_every_field() -> None:
    assert set(NON_DEFAULT) == set(Settings.model_fields)
    defaults = Settings()
    assert all(getattr(defaults, name) != value for name, value in NON_DEFAULT.items())


def test_defaults() -> None:
    settings = Settings()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.kafka_config == {}
    assert settings.topic_prefix == ""
    assert settings.models_path == Path("models")
    assert settings.topics.predictions == "predictions"


def test_fields_are_read_from_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMON_KAFKA_BOOTSTRAP", "broker:29092")
    monkeypatch.setenv("MODELMON_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("MODELMON_WINDOW_SECONDS", "15")
    monkeypatch.setenv("MODELMON_MODELS_PATH", "/specs")
    settings = Settings()
    assert settings.kafka_bootstrap == "broker:29092"
    assert settings.window_seconds == 15
    assert settings.models_path == Path("/specs")
    assert settings.topics.ground_truth == "staging.ground-truth"


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "wrong:1")
    monkeypatch.setenv("TOPIC_PREFIX", "wrong.")
    settings = Settings()
    assert (settings.kafka_bootstrap, settings.topic_prefix) == ("127.0.0.1:9092", "")


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("modelmon_app_id", "lower")
    assert Settings().app_id == "lower"


def test_dotenv_file_is_read_and_the_environment_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    Path(".env").write_text("MODELMON_APP_ID=from-file\nMODELMON_TOPIC_PREFIX=file.\nOTHER_TOOL=x\n")
    monkeypatch.setenv("MODELMON_TOPIC_PREFIX", "env.")
    settings = Settings()
    assert (settings.app_id, settings.topic_prefix) == ("from-file", "env.")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MODELMON_TOPIC_PARTITIONS", "0"),
        ("MODELMON_WINDOW_SECONDS", "soon"),
        ("MODELMON_BATCH_WITHIN", "0"),
        ("MODELMON_RETENTION_SECONDS", "59"),
        ("MODELMON_WEB_PORT", "-1"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [error["loc"] for error in info.value.errors()] == [(name.removeprefix("MODELMON_").lower(),)]


# -- to_env() -------------------------------------------------------------------------------------


def test_to_env_names_every_field_with_string_values() -> None:
    env = Settings(**NON_DEFAULT).to_env()
    assert set(env) == {f"MODELMON_{name.upper()}" for name in Settings.model_fields}
    assert all(isinstance(value, str) for value in env.values())
    assert env["MODELMON_TOPIC_PREFIX"] == "acme."
    assert env["MODELMON_MODELS_PATH"] == "/etc/modelmon/models"
    assert env["MODELMON_TOPIC_PARTITIONS"] == "12"
    assert json.loads(env["MODELMON_KAFKA_CONFIG"]) == NON_DEFAULT["kafka_config"]


def test_to_env_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(**NON_DEFAULT)
    for name, value in original.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == original


def test_to_env_round_trip_of_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = Settings()
    for name, value in defaults.to_env().items():
        monkeypatch.setenv(name, value)
    assert Settings() == defaults


def test_to_env_round_trip_into_a_child_process(tmp_path: Path) -> None:
    original = Settings(**NON_DEFAULT)
    code = "from modelmon.settings import Settings; print(Settings().model_dump_json())"
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELMON_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        # The checked-out code (this worktree's), not whichever modelmon the interpreter has installed.
        env={**env, **original.to_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert Settings.model_validate_json(result.stdout) == original


# -- kafka_config ---------------------------------------------------------------------------------


def test_kafka_config_is_json_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMON_KAFKA_BOOTSTRAP", "kafka:9093")
    monkeypatch.setenv(
        "MODELMON_KAFKA_CONFIG", '{"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}'
    )
    settings = Settings()
    assert settings.kafka_config == {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512"}
    assert settings.kafka_common() == {
        "bootstrap.servers": "kafka:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
    }


def test_kafka_common_without_extra_config() -> None:
    assert Settings(kafka_bootstrap="a:1").kafka_common() == {"bootstrap.servers": "a:1"}


def test_consumers_accept_large_fetch_responses_unless_kafka_config_says_otherwise() -> None:
    consumer = Settings(kafka_bootstrap="a:1").kafka_consumer()
    assert consumer == {"bootstrap.servers": "a:1", "receive.message.max.bytes": 1 << 30}
    mine = Settings(kafka_bootstrap="a:1", kafka_config={"receive.message.max.bytes": "2000000"})
    assert mine.kafka_consumer()["receive.message.max.bytes"] == "2000000"
    assert "receive.message.max.bytes" not in Settings(kafka_bootstrap="a:1").kafka_common()  # producers


def test_kafka_config_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELMON_KAFKA_CONFIG", "security.protocol=SASL_SSL")
    with pytest.raises(SettingsError, match="kafka_config"):
        Settings()
