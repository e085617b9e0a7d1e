"""JSON Schema export: one valid schema file per event type, holding the contract's fields."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from modelmon.events import EVENT_TYPES, model_to_json
from modelmon.schema import export_schemas
from tests.test_events import EXAMPLES

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
HAS_JSONSCHEMA = importlib.util.find_spec("jsonschema") is not None

# The contract as written in the issue: these fields are part of it, whatever else is added.
CONTRACT_FIELDS = {
    "PredictionEvent": {
        "prediction_id",
        "model_id",
        "model_version",
        "ts",
        "features",
        "prediction",
        "score",
        "scores",
        "tags",
    },
    "GroundTruthEvent": {"prediction_id", "model_id", "label", "ts"},
}
CONTRACT_REQUIRED = {
    "PredictionEvent": {"model_id", "features", "prediction"},
    "GroundTruthEvent": {"prediction_id", "model_id", "label"},
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("schemas") / "nested" / "dir"
    paths = export_schemas(directory)
    assert sorted(paths) == sorted(directory.iterdir())
    return {path.stem: json.loads(path.read_text()) for path in paths}


def test_one_file_per_event_type(exported: dict[str, dict[str, Any]]) -> None:
    assert set(exported) == set(EVENT_TYPES)
    assert {"PredictionEvent", "GroundTruthEvent"} <= set(exported)


@pytest.mark.parametrize("name", list(EVENT_TYPES))
def test_each_file_is_a_draft_2020_12_object_schema(exported: dict[str, dict[str, Any]], name: str) -> None:
    schema = exported[name]
    assert schema["$schema"] == DRAFT_2020_12
    assert schema["$id"] == f"{name}.json"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(EVENT_TYPES[name].model_fields)
    assert set(schema["required"]) <= set(schema["properties"])


@pytest.mark.parametrize("name", list(EVENT_TYPES))
def test_schema_properties_are_the_fields_on_the_wire(exported: dict[str, dict[str, Any]], name: str) -> None:
    on_the_wire = json.loads(model_to_json(EXAMPLES[name]))
    assert set(on_the_wire) == set(exported[name]["properties"])


@pytest.mark.parametrize("name", sorted(CONTRACT_FIELDS))
def test_contract_fields_are_in_the_schema(exported: dict[str, dict[str, Any]], name: str) -> None:
    schema = exported[name]
    assert CONTRACT_FIELDS[name] <= set(schema["properties"])
    assert set(schema["required"]) == CONTRACT_REQUIRED[name]


def test_timestamp_accepts_text_or_epoch_milliseconds(exported: dict[str, dict[str, Any]]) -> None:
    ts = exported["PredictionEvent"]["properties"]["ts"]
    assert {"type": "string", "format": "date-time"} in ts["anyOf"]
    assert {"type": "integer", "description": "epoch milliseconds"} in ts["anyOf"]


def test_score_range_is_in_the_schema(exported: dict[str, dict[str, Any]]) -> None:
    score = exported["PredictionEvent"]["properties"]["score"]
    number = next(option for option in score["anyOf"] if option.get("type") == "number")
    assert (number["minimum"], number["maximum"]) == (0.0, 1.0)


def test_export_overwrites_and_is_stable(tmp_path: Path) -> None:
    first = {path.name: path.read_text() for path in export_schemas(tmp_path)}
    (tmp_path / "PredictionEvent.json").write_text("stale")
    second = {path.name: path.read_text() for path in export_schemas(tmp_path)}
    assert second == first


@pytest.mark.skipif(not HAS_JSONSCHEMA, reason="jsonschema is not installed")
@pytest.mark.parametrize("name", list(EVENT_TYPES))
def test_schema_is_valid_and_accepts_a_serialised_event(
    exported: dict[str, dict[str, Any]], name: str
) -> None:
    import jsonschema

    schema = exported[name]
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads(model_to_json(EXAMPLES[name])), schema, jsonschema.Draft202012Validator)
