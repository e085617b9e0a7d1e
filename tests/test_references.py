"""Reference profiles: file → `modelmon reference load` → compacted topic → catalog; ClickHouse storage."""

from __future__ import annotations

import csv
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner, Result
from confluent_kafka import Producer

from detectors.profiles import CategoricalFeatureProfile, ReferenceProfile
from detectors.profiles.files import ReferenceFileError, load_reference_file
from detectors.profiles.records import ReferenceRecord, reference_records
from modelmon.app.broker import EmbeddedBroker
from modelmon.app.cli import cli
from modelmon.references import PREDICTION_FEATURE
from modelmon.settings import Settings
from modelmon.spec import parse_spec
from sinks.clickhouse import Client
from sinks.references import load_reference, load_reference_records, store_reference
from streams.references import ReferenceCatalog, ReferencePublishError, publish_reference

MODEL = "churn"
SPEC: dict[str, Any] = {
    "model_id": MODEL,
    "task": "binary",
    "features": {
        "tenure": {"type": "numerical"},
        "plan": {"type": "categorical"},
        "is_new": {"type": "boolean"},
    },
}
KINDS = {"tenure": "numerical", "plan": "categorical", "is_new": "boolean"}


# -- data, files and helpers ----------------------------------------------------------------------


def make_data(seed: int, rows: int = 500) -> dict[str, list[Any]]:
    """Columns as Python values (None = missing), with a score and a column the spec does not know."""
    rng = np.random.default_rng(seed)
    tenure: list[Any] = [round(float(v), 3) for v in rng.gamma(2.0, 12.0, rows)]
    tenure[::50] = [None] * len(tenure[::50])
    plan: list[Any] = [str(v) for v in rng.choice(["free", "pro", "team"], rows, p=[0.6, 0.3, 0.1])]
    plan[7] = None
    return {
        "tenure": tenure,
        "plan": plan,
        "is_new": [bool(v) for v in rng.random(rows) < 0.2],
        "score": [round(float(v), 6) for v in rng.random(rows)],
        "customer_name": [f"c{i}" for i in range(rows)],
    }


def expected_profile(data: dict[str, list[Any]], *, score: bool = True) -> ReferenceProfile:
    columns: dict[str, Any] = {
        "tenure": np.array([np.nan if v is None else v for v in data["tenure"]]),
        "plan": np.array(data["plan"], dtype=object),
        "is_new": np.array(data["is_new"], dtype=object),
    }
    kinds = dict(KINDS)
    if score:
        columns[PREDICTION_FEATURE] = np.array(data["score"])
        kinds[PREDICTION_FEATURE] = "numerical"
    return ReferenceProfile.from_data(columns, kinds)


def write_csv(path: Path, data: dict[str, list[Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(data))
        for row in zip(*data.values(), strict=True):
            writer.writerow(["" if v is None else str(v).lower() if isinstance(v, bool) else v for v in row])
    return path


def write_parquet(path: Path, data: dict[str, list[Any]]) -> Path:
    pa = pytest.importorskip("pyarrow")
    parquet = pytest.importorskip("pyarrow.parquet")
    parquet.write_table(pa.table(data), path)
    return path


@pytest.fixture
def settings(kafka_broker: EmbeddedBroker, topic_prefix: str) -> Settings:
    return Settings(kafka_bootstrap=kafka_broker.bootstrap, topic_prefix=topic_prefix, topic_partitions=2)


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "churn.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(SPEC))
    return path


@pytest.fixture
def load(settings: Settings, spec_path: Path) -> Callable[..., Result]:
    """Run ``modelmon reference load ARGS...`` with the test's broker, prefix and spec."""

    def run(*args: str, dsn: str | None = None) -> Result:
        env = {
            "MODELMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "MODELMON_TOPIC_PREFIX": settings.topic_prefix,
            "MODELMON_TOPIC_PARTITIONS": str(settings.topic_partitions),
            "MODELMON_MODELS_PATH": str(spec_path),
            **({"MODELMON_CLICKHOUSE_DSN": dsn} if dsn else {}),
        }
        return CliRunner().invoke(cli, ["reference", "load", *args], env=env, prog_name="modelmon")

    return run


@pytest.fixture
def catalog(settings: Settings) -> Iterator[Callable[[], ReferenceCatalog]]:
    """Start a fresh catalog (and stop it after the test); waits until it has caught up."""
    started: list[ReferenceCatalog] = []

    def start() -> ReferenceCatalog:
        started.append(ReferenceCatalog(settings).start())
        assert started[-1].wait_until_caught_up(30), "the catalog did not catch up in 30 s"
        return started[-1]

    yield start
    for each in started:
        each.stop()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- file → topic → catalog -----------------------------------------------------------------------


@pytest.mark.integration
def test_csv_load_reaches_a_fresh_catalog(
    tmp_path: Path, load: Callable[..., Result], catalog: Callable[[], ReferenceCatalog]
) -> None:
    data = make_data(seed=1)
    result = load(MODEL, str(write_csv(tmp_path / "train.csv", data)), "--version", "3", "--no-store")

    assert result.exit_code == 0, result.output
    assert "500 rows" in result.output and "ignored columns: customer_name" in result.output
    assert "published 4 messages" in result.output and "--no-store" in result.output
    reference = catalog().get(MODEL, "3")
    assert reference is not None
    assert reference.spec == {**KINDS, PREDICTION_FEATURE: "numerical"}
    assert reference == expected_profile(data)
    assert reference["tenure"].missing == 10 and reference["plan"].missing == 1


@pytest.mark.integration
def test_parquet_load_gives_the_same_profile_as_from_data(
    tmp_path: Path, load: Callable[..., Result], catalog: Callable[[], ReferenceCatalog]
) -> None:
    data = make_data(seed=2)
    result = load(MODEL, str(write_parquet(tmp_path / "train.parquet", data)), "--no-store")

    assert result.exit_code == 0, result.output
    found = catalog()
    assert found.get(MODEL, "1") == expected_profile(data)
    assert found.get(MODEL, "2") is None, "no fallback to another version"
    assert found.invalid == 0


@pytest.mark.integration
def test_a_second_load_replaces_the_first_in_running_and_fresh_catalogs(
    tmp_path: Path, load: Callable[..., Result], catalog: Callable[[], ReferenceCatalog]
) -> None:
    first, second = make_data(seed=3), make_data(seed=4)
    del second["score"]  # the newer file has no model output: the old __prediction__ must not linger
    assert load(MODEL, str(write_csv(tmp_path / "a.csv", first)), "--no-store").exit_code == 0
    running = catalog()
    assert running.get(MODEL, "1") == expected_profile(first)
    changes: list[tuple[str, str, ReferenceProfile | None]] = []
    running.listeners.append(lambda *change: changes.append(change))

    result = load(MODEL, str(write_csv(tmp_path / "b.csv", second)), "--no-store")

    assert result.exit_code == 0, result.output
    wanted = expected_profile(second, score=False)
    assert wait_for(lambda: running.get(MODEL, "1") == wanted)
    assert changes and changes[-1][:2] == (MODEL, "1") and changes[-1][2] == wanted
    assert catalog().get(MODEL, "1") == wanted


@pytest.mark.integration
def test_invalid_messages_are_counted_and_do_not_break_the_catalog(
    settings: Settings, catalog: Callable[[], ReferenceCatalog]
) -> None:
    profile = expected_profile(make_data(seed=5))
    publish_reference(settings, MODEL, "1", profile, "file:good.csv")
    valid = reference_records(MODEL, "1", profile, "first_n")[0]
    broken_profile = json.loads(valid.to_json())
    broken_profile["profile"] = {"kind": "numerical", "count": "many"}
    producer = Producer(settings.kafka_common())
    for key, value in [
        (b"churn|1|x", b"{not json"),
        (b"churn|1|x", b"[1, 2]"),
        (b"churn|1|x", json.dumps({"model_id": MODEL}).encode()),
        (b"churn|9|other-key", valid.to_json()),  # key does not match the record
        (valid.key.encode(), json.dumps(broken_profile).encode()),
        (b"\xff\xfe", valid.to_json()),
    ]:
        producer.produce(settings.topics.reference_profiles, key=key, value=value)
    assert producer.flush(10) == 0

    found = catalog()
    assert wait_for(lambda: found.invalid == 6)
    assert found.get(MODEL, "1") == profile
    assert found.error is None and found.caught_up


@pytest.mark.integration
def test_a_tombstone_removes_a_feature_and_an_incomplete_publication_falls_back(
    settings: Settings, catalog: Callable[[], ReferenceCatalog]
) -> None:
    old, new = expected_profile(make_data(seed=6)), expected_profile(make_data(seed=7))
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    publish_reference(settings, MODEL, "1", old, "file:old.csv", created_at=earlier)
    publish_reference(settings, MODEL, "1", new, "file:new.csv")
    found = catalog()
    assert found.get(MODEL, "1") == new

    producer = Producer(settings.kafka_common())
    producer.produce(settings.topics.reference_profiles, key=f"{MODEL}|1|plan".encode(), value=None)
    assert producer.flush(10) == 0

    # The newest publication lost a feature: the newest complete one is used (here: none left).
    assert wait_for(lambda: found.get(MODEL, "1") is None)
    assert found.versions() == []


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_missing_column_is_a_clear_error_naming_the_file_and_the_column(
    tmp_path: Path, load: Callable[..., Result]
) -> None:
    data = make_data(seed=8)
    del data["plan"]
    path = write_csv(tmp_path / "no-plan.csv", data)

    result = load(MODEL, str(path), "--no-store")

    assert result.exit_code == 2
    assert str(path) in result.output and "missing column(s)" in result.output and "plan" in result.output
    assert "Traceback" not in result.output


def test_a_value_that_is_not_a_number_names_line_and_column(tmp_path: Path) -> None:
    data = make_data(seed=9, rows=20)
    data["tenure"][4] = "forty"
    path = write_csv(tmp_path / "bad.csv", data)
    with pytest.raises(
        ReferenceFileError, match=r"bad\.csv: line 6, column 'tenure': 'forty' is not a number"
    ):
        load_reference_file(path, parse_spec(SPEC))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("data.json", "{}", "unknown file type '.json'"),
        ("absent.csv", None, "no such file"),
        ("empty.csv", "tenure,plan,is_new\n", "no data rows"),
        ("twice.csv", "tenure,plan,plan,is_new\n1,a,b,true\n", "repeated column name"),
        ("allmissing.csv", "tenure,plan,is_new\n,a,true\n", "column 'tenure' (numerical): a numerical"),
        ("fake.parquet", "not parquet", "not a readable Parquet file"),
    ],
)
def test_unusable_files_are_clear_errors(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(ReferenceFileError, match=re.escape(message)) as caught:
        load_reference_file(path, parse_spec(SPEC))
    assert str(path) in str(caught.value)


@pytest.mark.integration
def test_an_unknown_model_lists_the_known_ones(tmp_path: Path, load: Callable[..., Result]) -> None:
    result = load("nope", str(write_csv(tmp_path / "x.csv", make_data(seed=10))), "--no-store")
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output and "churn" in result.output


def test_an_oversized_record_is_refused_before_anything_is_sent() -> None:
    rng = np.random.default_rng(0)
    profile = ReferenceProfile.from_data(
        {"x": rng.normal(size=70_000)}, {"x": "numerical"}, sample_size=70_000
    )
    nowhere = Settings(kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(ReferencePublishError, match=r"over 1000000 bytes: x \(\d+ bytes\)"):
        publish_reference(nowhere, MODEL, "1", profile, "file:big.csv")


def test_prediction_column_kind_follows_the_task(tmp_path: Path) -> None:
    data = make_data(seed=11, rows=50)
    data["prediction"] = ["yes" if s > 0.5 else "no" for s in data["score"]]
    path = write_csv(tmp_path / "p.csv", data)
    binary = load_reference_file(path, parse_spec(SPEC))
    multiclass = load_reference_file(path, parse_spec({**SPEC, "task": "multiclass"}))
    del data["score"]
    data["prediction"] = data["tenure"]
    regression = load_reference_file(
        write_csv(tmp_path / "r.csv", data), parse_spec({**SPEC, "task": "regression"})
    )
    assert binary.columns[PREDICTION_FEATURE] == "score"
    assert binary.profile[PREDICTION_FEATURE].kind == "numerical"
    classes = multiclass.profile[PREDICTION_FEATURE]
    assert isinstance(classes, CategoricalFeatureProfile) and classes.counts().keys() == {"yes", "no"}
    assert regression.profile[PREDICTION_FEATURE].kind == "numerical"


# -- ClickHouse -----------------------------------------------------------------------------------


@pytest.mark.integration
def test_store_and_load_round_trip_latest_wins(clickhouse_client: Client, model_id: str) -> None:
    first = expected_profile(make_data(seed=12))
    second = expected_profile(make_data(seed=13), score=False)
    assert store_reference(clickhouse_client, model_id, "1", first, "file:a.csv") == 4
    assert load_reference(clickhouse_client, model_id, "1") == first

    store_reference(clickhouse_client, model_id, "1", second, "first_n")

    assert load_reference(clickhouse_client, model_id, "1") == second
    assert {r.source for r in load_reference_records(clickhouse_client, model_id, "1")} >= {"first_n"}
    assert load_reference(clickhouse_client, model_id, "2") is None
    assert load_reference(clickhouse_client, "no-such-model", "1") is None


@pytest.mark.integration
def test_cli_stores_in_clickhouse_and_fails_when_it_cannot(
    tmp_path: Path, load: Callable[..., Result], clickhouse_client: Client, clickhouse_dsn: str
) -> None:
    data = make_data(seed=14)
    path = write_csv(tmp_path / "ref.csv", data)
    version = f"v{uuid.uuid4().hex[:8]}"  # the session's ClickHouse is shared with other tests
    stored = load(MODEL, str(path), "--version", version, dsn=clickhouse_dsn)
    assert stored.exit_code == 0, stored.output
    assert "stored 4 rows" in stored.output
    assert load_reference(clickhouse_client, MODEL, version) == expected_profile(data)

    if not clickhouse_dsn.startswith("chdb://"):
        pytest.skip("the held-engine case is specific to embedded chdb")
    # This process already runs the session's chdb engine, as a running sink would hold it.
    held = load(MODEL, str(path), "--version", "held", dsn=f"chdb://{tmp_path / 'other'}")
    assert held.exit_code == 1, held.output  # published, but not stored: the command did not do all it says
    assert "published 4 messages" in held.output
    assert "published to Kafka, but not stored in ClickHouse" in held.output and "--no-store" in held.output


def test_records_round_trip_through_json() -> None:
    profile = expected_profile(make_data(seed=15))
    for record in reference_records(MODEL, "7", profile, "rolling"):
        again = ReferenceRecord.from_json(record.to_json())
        assert again == record and again.key == f"{MODEL}|7|{record.feature}"
        assert again.feature_profile() == profile[record.feature]
        assert json.loads(record.to_json())["created_at"].endswith("Z")
