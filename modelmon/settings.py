"""Runtime settings, read from the environment (prefix ``MODELMON_``) and an optional ``.env`` file."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelmon.topics import Topics


class Settings(BaseSettings):
    """Every setting of a modelmon process; each field is ``MODELMON_<NAME>`` in the environment.

    >>> Settings(kafka_bootstrap="127.0.0.1:9092").topics.predictions
    'predictions'
    """

    model_config = SettingsConfigDict(env_prefix="MODELMON_", env_file=".env", extra="ignore")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    kafka_config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra librdkafka settings passed through (SASL/TLS), as JSON in the environment.",
    )
    topic_prefix: str = Field(default="", description="Prefix for every topic name.")
    topic_partitions: int = Field(default=4, ge=1, description="Partitions of topics modelmon creates.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor of created topics.")
    clickhouse_dsn: str = Field(
        default="chdb://./.modelmon/clickhouse",
        description="ClickHouse: chdb://DIR or chdb://memory (embedded), http(s)://host:8123 (server).",
    )
    models_path: Path = Field(
        default=Path("models"), description="A model spec YAML file, or a directory of them."
    )
    app_id: str = Field(default="modelmon", description="faust app id = Kafka consumer group of workers.")
    worker_data_dir: Path = Field(default=Path(".modelmon/worker"), description="faust local state.")
    table_store: str = Field(default="memory://", description="faust table store: memory:// or rocksdb://")
    window_seconds: int = Field(default=60, ge=1, description="Tumbling event-time window size.")
    batch_size: int = Field(default=1000, ge=1, description="Events taken from a stream at once.")
    batch_within: float = Field(default=0.5, gt=0, description="Max seconds to wait to fill a batch.")
    sink_batch_size: int = Field(default=5000, ge=1, description="Rows per ClickHouse insert.")
    sink_flush_seconds: float = Field(default=1.0, gt=0, description="Max seconds between inserts.")
    allowed_lateness_seconds: int = Field(
        default=300, ge=0, description="An event this long after its window's end is counted as late."
    )
    retention_seconds: int = Field(
        default=86400, ge=60, description="Windows older than this are final; older events dead-letter."
    )
    chunk_size: int = Field(
        default=5000, ge=1, description="Input offsets per stage-1 chunk (unacknowledged at most)."
    )
    idle_flush_seconds: float = Field(
        default=1.0, gt=0, description="A chunk quiet this long publishes a revision of its partials."
    )
    window_grace_seconds: float = Field(
        default=5.0, gt=0, description="Stage 2 closes a window with no new partial for this long."
    )
    broker_session_timeout: float = Field(default=6.0, gt=0, description="Consumer group session (s).")
    commit_interval: float = Field(default=1.0, gt=0, description="Seconds between offset commits.")
    web_port: int = Field(default=0, ge=0, description="faust web port on 127.0.0.1 (0 = disabled).")
    log_level: str = Field(default="info")

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)

    def to_env(self) -> dict[str, str]:
        """These settings as ``MODELMON_*`` environment variables (for starting child processes)."""
        env = {}
        for name, value in self.model_dump(mode="json").items():
            env[f"MODELMON_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
        return env

    def kafka_common(self) -> dict[str, str]:
        """librdkafka settings shared by every producer, consumer and admin client."""
        return {"bootstrap.servers": self.kafka_bootstrap, **self.kafka_config}
