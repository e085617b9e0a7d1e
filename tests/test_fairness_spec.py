"""The ``fairness`` section of a model spec: accepted forms and clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from modelmon.spec import SpecError, parse_spec


def spec(task: str = "binary", **fairness: Any) -> dict[str, Any]:
    features = {
        "age": {"type": "numerical"},
        "gender": {"type": "categorical"},
        "member": {"type": "boolean"},
    }
    return {"model_id": "loans", "task": task, "features": features, "fairness": fairness}


def test_features_and_tags_with_defaults() -> None:
    fairness = parse_spec(spec(attributes=["gender", "member", "tag:region"])).fairness
    assert fairness is not None
    assert fairness.attributes == ["gender", "member", "tag:region"] and fairness.min_group_size == 30
    assert fairness.favourable_class("1") == "1" and fairness.tag("tag:region") == "region"
    assert fairness.tag("gender") is None
    assert parse_spec(spec(attributes=["gender"], favourable=True)).fairness.favourable == "1"  # type: ignore[union-attr]
    assert parse_spec({**spec(), "fairness": None}).fairness is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"attributes": ["age"]}, "attribute 'age' is numerical: groups need a categorical or boolean"),
        ({"attributes": ["income"]}, "attribute 'income' is not a feature of the spec"),
        ({"attributes": ["gender", "gender"]}, "must not repeat entries; repeated: ['gender']"),
        ({"attributes": ["tag:"]}, "write tag:<name>"),
        ({"attributes": ["a=b"]}, "must not contain '='"),
        ({"attributes": []}, "field 'fairness.attributes'"),
        ({"attributes": ["gender"], "min_group_size": -1}, "field 'fairness.min_group_size'"),
        ({"attributes": ["gender"], "favorable": 1}, "field 'fairness.favorable'"),
    ],
)
def test_errors_name_the_field_and_the_problem(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec(**overrides), "loans.yaml")
    assert message in str(error.value) and "loans.yaml" in str(error.value)


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_are_refused(task: str) -> None:
    with pytest.raises(SpecError, match=f"binary classifiers only \\(task is '{task}'\\)"):
        parse_spec(spec(task, attributes=["gender"]))
