"""Model specs: the examples load, and every error names the file, the field and a fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelmon.events import Severity
from modelmon.kinds import FeatureKind, check_kind
from modelmon.spec import ModelSpec, SpecError, Task, load_spec_file, load_specs, parse_duration

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "models"


def base_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "model_id": "churn",
        "task": "binary",
        "features": {"tenure": {"type": "numerical", "min": 0}, "plan": {"type": "categorical"}},
        **overrides,
    }


def write(directory: Path, name: str, data: Any) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def spec_error(tmp_path: Path, data: Any) -> tuple[Path, str]:
    """Write ``data`` to a file, load it, and return the file and the error message."""
    path = write(tmp_path, "churn.yaml", data)
    with pytest.raises(SpecError) as info:
        load_specs(path)
    return path, str(info.value)


def error_line(message: str, field: str) -> str:
    """The one line of a spec error about ``field``."""
    lines = [line for line in message.splitlines() if f"field '{field}'" in line]
    assert len(lines) == 1, f"expected one error about {field!r} in:\n{message}"
    return lines[0]


# -- the examples ---------------------------------------------------------------------------------


def test_example_specs_load() -> None:
    specs = load_specs(EXAMPLES_DIR)
    assert set(specs) == {"fraud-detector", "house-prices"}
    fraud, houses = specs["fraud-detector"], specs["house-prices"]
    assert fraud.task is Task.BINARY
    assert houses.task is Task.REGRESSION
    assert fraud.features["country"].type is FeatureKind.CATEGORICAL
    assert fraud.features["country"].allowed == ["DE", "FR", "US", "GB", "NL"]
    assert fraud.required_features() == ["amount"]
    assert [rule.name for rule in fraud.alerts] == ["feature-drift", "accuracy-drop"]
    assert fraud.alerts[0].for_windows == 2
    assert fraud.retrain.on_rules == ["accuracy-drop"]
    assert houses.retrain.on_rules == ["error-up"]


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_each_example_file_loads_on_its_own(path: Path) -> None:
    [spec] = load_spec_file(path)
    assert spec.model_id == path.stem


def test_defaults_of_a_minimal_spec() -> None:
    spec = ModelSpec.model_validate(base_spec())
    assert spec.reference.source == "first_n"
    assert spec.drift.method == "auto"
    assert spec.alerts == []
    assert spec.retrain.enabled is False
    assert spec.label_ttl == "7d"
    assert spec.required_features() == []


# -- errors: file, field, fix ---------------------------------------------------------------------


def test_wrong_task_value(tmp_path: Path) -> None:
    path, message = spec_error(tmp_path, base_spec(task="classification"))
    assert message.startswith(f"{path}: ")
    line = error_line(message, "task")
    assert "'binary', 'multiclass' or 'regression'" in line
    assert "fix: use one of the values listed" in line


def test_unknown_top_level_field_lists_the_valid_fields(tmp_path: Path) -> None:
    path, message = spec_error(tmp_path, base_spec(treshold=0.2))
    assert message.startswith(f"{path}: ")
    line = error_line(message, "treshold")
    assert "fix: remove it or check its spelling" in line
    valid = line.split("valid top-level fields: ", 1)[1].rstrip(")").split(", ")
    assert valid == list(ModelSpec.model_fields)


def test_unknown_nested_field_does_not_list_top_level_fields(tmp_path: Path) -> None:
    spec = base_spec(features={"tenure": {"type": "numerical", "minimum": 0}})
    _, message = spec_error(tmp_path, spec)
    line = error_line(message, "features.tenure.minimum")
    assert "remove it or check its spelling" in line
    assert "valid top-level fields" not in line


def test_missing_features(tmp_path: Path) -> None:
    spec = base_spec()
    del spec["features"]
    path, message = spec_error(tmp_path, spec)
    assert message.startswith(f"{path}: ")
    assert "fix: add this field" in error_line(message, "features")


def test_empty_features(tmp_path: Path) -> None:
    _, message = spec_error(tmp_path, base_spec(features={}))
    assert "fix: add at least one entry" in error_line(message, "features")


def test_min_greater_than_max(tmp_path: Path) -> None:
    spec = base_spec(features={"tenure": {"type": "numerical", "min": 10, "max": 1}})
    path, message = spec_error(tmp_path, spec)
    assert message.startswith(f"{path}: ")
    line = error_line(message, "features.tenure")
    assert "min (10.0) is greater than max (1.0)" in line
    assert "fix: " in line


def test_allowed_on_a_numerical_feature(tmp_path: Path) -> None:
    spec = base_spec(features={"tenure": {"type": "numerical", "allowed": ["a"]}})
    path, message = spec_error(tmp_path, spec)
    assert message.startswith(f"{path}: ")
    line = error_line(message, "features.tenure")
    assert "allowed applies to categorical features only" in line
    assert "fix: " in line


def test_min_on_a_categorical_feature(tmp_path: Path) -> None:
    spec = base_spec(features={"plan": {"type": "categorical", "min": 0}})
    _, message = spec_error(tmp_path, spec)
    assert "min/max apply to numerical features only" in error_line(message, "features.plan")


def test_unknown_feature_type(tmp_path: Path) -> None:
    spec = base_spec(features={"tenure": {"type": "number"}})
    _, message = spec_error(tmp_path, spec)
    line = error_line(message, "features.tenure.type")
    assert "'numerical', 'categorical' or 'boolean'" in line
    assert "fix: use one of the values listed" in line


def test_feature_types_are_the_kinds_the_detectors_check() -> None:
    spec = ModelSpec.model_validate(base_spec(features={k.value: {"type": k.value} for k in FeatureKind}))
    for name, feature in spec.features.items():
        assert feature.type is check_kind(name) and feature.type == name


RULE = {"name": "drift", "metric": "psi", "threshold": 0.2}


def test_severities_are_the_alerts_severity(tmp_path: Path) -> None:
    spec = ModelSpec.model_validate(base_spec(alerts=[{**RULE, "severity": "info"}, {**RULE, "name": "d"}]))
    assert [rule.severity for rule in spec.alerts] == [Severity.INFO, Severity.WARNING]
    assert spec.retrain.min_severity is Severity.CRITICAL
    _, message = spec_error(tmp_path, base_spec(alerts=[{**RULE, "severity": "high"}]))
    assert "'info', 'warning' or 'critical'" in error_line(message, "alerts.0.severity")


def test_retrain_on_unknown_rule(tmp_path: Path) -> None:
    spec = base_spec(alerts=[RULE], retrain={"enabled": True, "on_rules": ["drift", "accuracy"]})
    path, message = spec_error(tmp_path, spec)
    assert message.startswith(f"{path}: ")
    line = error_line(message, "retrain")
    assert "retrain.on_rules names unknown alert rules ['accuracy']" in line
    assert "defined: ['drift']" in line


def test_retrain_on_rules_is_not_checked_against_invalid_alerts(tmp_path: Path) -> None:
    # The broken rule is the one error; on_rules is not also reported as naming an unknown rule.
    spec = base_spec(alerts=[{"name": "drift", "metric": "psi"}], retrain={"on_rules": ["drift"]})
    _, message = spec_error(tmp_path, spec)
    assert "fix: add this field" in error_line(message, "alerts.0.threshold")
    assert len(message.splitlines()) == 2, message


def test_duplicate_rule_names(tmp_path: Path) -> None:
    spec = base_spec(alerts=[RULE, {**RULE, "metric": "ks"}, {**RULE, "name": "other"}])
    path, message = spec_error(tmp_path, spec)
    assert message.startswith(f"{path}: ")
    line = error_line(message, "alerts")
    assert "alert rule names must be unique; repeated: ['drift']" in line


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"label_ttl": "5 minutes"}, "label_ttl"),
        ({"alerts": [{**RULE, "cooldown": "5 minutes"}]}, "alerts.0.cooldown"),
        ({"retrain": {"cooldown": "5 minutes"}}, "retrain.cooldown"),
        ({"reference": {"source": "first_period", "period": "5 minutes"}}, "reference"),
    ],
)
def test_bad_duration(tmp_path: Path, overrides: dict[str, Any], field: str) -> None:
    path, message = spec_error(tmp_path, base_spec(**overrides))
    assert message.startswith(f"{path}: ")
    line = error_line(message, field)
    assert "'5 minutes' is not a duration; write e.g. '30s', '5m', '2h' or '7d'" in line


def test_bad_model_id_pattern(tmp_path: Path) -> None:
    _, message = spec_error(tmp_path, base_spec(model_id="-churn model"))
    assert "fix: use letters, digits" in error_line(message, "model_id")


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    spec = base_spec(task="ranking", label_ttl="soon", colour="red")
    _, message = spec_error(tmp_path, spec)
    for field in ("task", "label_ttl", "colour"):
        error_line(message, field)


def test_invalid_yaml(tmp_path: Path) -> None:
    path, message = spec_error(tmp_path, "model_id: churn\nfeatures: {tenure: {type: numerical}\n")
    assert message.startswith(f"{path}: not valid YAML")
    assert "line 3" in message


@pytest.mark.parametrize("text", ["", "- churn\n- fraud\n", "just text\n"], ids=["empty", "list", "scalar"])
def test_a_file_that_is_not_a_mapping(tmp_path: Path, text: str) -> None:
    path, message = spec_error(tmp_path, text)
    assert message == f"{path}: a model spec is a mapping with model_id, task and features"


def test_duplicate_model_id_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", base_spec())
    second = write(tmp_path, "b.yml", base_spec(task="regression"))
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{second}: field 'model_id': 'churn' is also defined in {first}")
    assert "fix: give each model a unique model_id" in message


def test_directory_loads_yaml_and_yml_files(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", base_spec())
    write(tmp_path, "b.yml", base_spec(model_id="fraud"))
    write(tmp_path, "notes.txt", "not a spec")
    assert set(load_specs(tmp_path)) == {"churn", "fraud"}


def test_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_specs(tmp_path)
    assert str(info.value) == f"{tmp_path}: no *.yaml model specs in this directory"


def test_missing_path_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"no such file or directory.*MODELMON_MODELS_PATH"):
        load_specs(tmp_path / "absent")


def test_models_list_form(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", {"models": [base_spec(), base_spec(model_id="fraud")]})
    specs = load_specs(path)
    assert list(specs) == ["churn", "fraud"]


def test_models_list_form_error_names_the_entry(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", {"models": [base_spec(), base_spec(model_id="fraud", task="x")]})
    with pytest.raises(SpecError) as info:
        load_specs(path)
    message = str(info.value)
    assert message.startswith(f"{path} (models[1]): invalid model spec")
    error_line(message, "task")


def test_models_list_form_with_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", {"models": [base_spec(), base_spec()]})
    with pytest.raises(SpecError, match="'churn' is also defined in"):
        load_specs(path)


def test_models_key_that_is_not_a_list(tmp_path: Path) -> None:
    path = write(tmp_path, "all.yaml", {"models": base_spec()})
    with pytest.raises(SpecError) as info:
        load_specs(path)
    assert str(info.value) == f"{path}: field 'models': must be a list of model specs"


# -- durations ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("250ms", timedelta(milliseconds=250)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        (" 2 h ", timedelta(hours=2)),
        (15, timedelta(seconds=15)),
        (0.5, timedelta(milliseconds=500)),
        (timedelta(hours=1), timedelta(hours=1)),
    ],
    ids=repr,
)
def test_parse_duration(text: Any, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["5 minutes", "5", "m", "-5m", "5w", "", True, None, [5]], ids=repr)
def test_parse_duration_refuses(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"is not a duration; write e\.g\. '30s'"):
        parse_duration(bad)
