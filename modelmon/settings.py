"""Runtime settings, read from the environment (prefix ``MODELMON_``) and an optional ``.env`` file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from modelmon.spec import parse_duration
from modelmon.topics import Topics

NotificationKind = Literal["alerts", "retrain"]
NOTIFICATION_KINDS: tuple[NotificationKind, ...] = ("alerts", "retrain")
# librdkafka settings of every consumer (Settings.kafka_consumer says why).
CONSUMER_DEFAULTS: dict[str, Any] = {"receive.message.max.bytes": 1 << 30}


class WebhookTarget(BaseModel):
    """Where alert and retrain notifications are POSTed (see docs/alerts.md).

    The URL (a Slack webhook URL is itself a credential) and the secret are left out of ``repr``;
    logs show :attr:`display_url` only.

    >>> target = WebhookTarget(url="https://hooks.example.com/T0/B0/xyz", secret="s3")
    >>> target.display_url, "s3" in repr(target), "xyz" in repr(target)
    ('https://hooks.example.com/…', False, False)
    """

    model_config = ConfigDict(extra="forbid")

    url: str = Field(repr=False, description="http:// or https:// URL.")
    format: Literal["json", "slack", "alertmanager"] = "json"
    secret: SecretStr | None = Field(default=None, description="HMAC-SHA256 signing key (optional).")
    kinds: list[NotificationKind] = Field(
        default_factory=lambda: list(NOTIFICATION_KINDS), description="What is sent to this target."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="Per attempt (connect, read, write).")
    max_attempts: int = Field(default=5, ge=1, description="Tries before the notification dead-letters.")
    backoff_seconds: float = Field(default=0.5, ge=0, description="First retry delay; doubles each time.")
    max_backoff_seconds: float = Field(default=30.0, ge=0, description="Cap of the retry delay.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or not urlsplit(value).hostname:
            raise ValueError("a webhook url is an http:// or https:// URL with a host")
        return value

    @field_serializer("secret", when_used="json")
    def _reveal_in_json(self, secret: SecretStr | None) -> str | None:
        # JSON is how settings reach child processes (Settings.to_env); repr and str stay masked.
        return None if secret is None else secret.get_secret_value()

    @property
    def display_url(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


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
    batch_size: int = Field(
        default=10_000,
        ge=1,
        description="Messages taken at once: the data plane's consume() and the control plane's streams.",
    )
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
    max_event_age: str = Field(
        default="7d",
        description="Events older than this (by their ts) go to dead-letter as ts_out_of_range; a model "
        "spec's max_event_age overrides it (backfill).",
    )
    max_future_skew: str = Field(
        default="15m", description="Events dated further ahead of the worker's clock go to dead-letter."
    )
    max_message_bytes: int = Field(
        default=1_000_000, ge=1024, description="Larger input messages go to dead-letter as too_large."
    )
    max_features: int = Field(
        default=1000, ge=1, description="Events with more features go to dead-letter as too_large."
    )
    max_string_chars: int = Field(
        default=4096, ge=64, description="Events with a longer string value go to dead-letter as too_large."
    )
    join_max_pending: int = Field(
        default=250_000,
        ge=1,
        description="Join entries kept per input partition; beyond, the oldest are evicted (a waiting "
        "prediction is counted as label_missing).",
    )
    max_partial_bytes: int = Field(
        default=900_000,
        ge=1024,
        description="Stage-1 partials larger than this are split into fragments (keep below the broker's "
        "message.max.bytes).",
    )
    shutdown_timeout: float = Field(
        default=4.0,
        gt=0,
        description="Seconds a stopping worker waits for a clean stop before it exits anyway (held "
        "inputs are replayed by the next owner).",
    )
    startup_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a starting worker, sink or `modelmon produce` retries an unreachable Kafka "
        "broker or ClickHouse server before it exits with an error.",
    )
    broker_session_timeout: float = Field(default=6.0, gt=0, description="Consumer group session (s).")
    commit_interval: float = Field(default=1.0, gt=0, description="Seconds between offset commits.")
    producer_linger: float = Field(
        default=0.01, ge=0, description="Seconds the worker's producer waits to batch messages."
    )
    web_port: int = Field(default=0, ge=0, description="faust web port on 127.0.0.1 (0 = disabled).")
    webhooks: list[WebhookTarget] = Field(
        default_factory=list,
        description="Webhook targets of alerts and retrain requests, as a JSON list in the environment.",
    )
    webhook_queue_size: int = Field(
        default=1000, ge=1, description="Notifications waiting per webhook target; beyond, dead-letter."
    )
    log_level: str = Field(default="info")

    @field_validator("max_event_age", "max_future_skew")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def max_event_age_ms(self) -> int:
        return int(parse_duration(self.max_event_age).total_seconds() * 1000)

    @property
    def max_future_skew_ms(self) -> int:
        return int(parse_duration(self.max_future_skew).total_seconds() * 1000)

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

    def kafka_consumer(self) -> dict[str, Any]:
        """:meth:`kafka_common` plus what every confluent-kafka consumer of modelmon sets.

        ``receive.message.max.bytes`` is raised to 1 GiB: noida-db (the embedded broker) sometimes
        answers a fetch with every message it holds, whatever the fetch limits (measured: 122 MB for
        200,000 messages; 196 MB for the bench's 1.2 million). Above the default 100 MB librdkafka
        refuses such a response and fetches it again, forever: nothing is read. Kafka bounds a
        response by ``fetch.max.bytes`` (50 MB), so there the larger limit changes nothing.
        ``kafka_config`` can still override it.
        """
        return {"bootstrap.servers": self.kafka_bootstrap, **CONSUMER_DEFAULTS, **self.kafka_config}
