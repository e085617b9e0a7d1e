"""Fairness in the stream: stage 1 folds groups (features and tags, through the join), partials merge
and round-trip, old partials load, and stage 2 publishes points equal to fairlearn's."""

from __future__ import annotations

from functools import reduce
from typing import Any

import numpy as np
import orjson
import pytest

from modelmon import metrics as m
from modelmon.settings import Settings
from modelmon.spec import parse_spec
from streams.bundle import WindowBundle
from streams.finalize import window_metrics
from streams.stage1 import Stage1
from tests.test_stage1_isolation import NOW_S, Message, Outputs, local_ids

fm = pytest.importorskip("fairlearn.metrics", reason="fairlearn is a dev dependency (pyproject [dev])")

SPEC = parse_spec({
    "model_id": "m", "task": "binary",
    "features": {"amount": {"type": "numerical"}, "gender": {"type": "categorical"},
                 "member": {"type": "boolean"}},
    "segments": ["channel"],
    "fairness": {"attributes": ["gender", "member", "tag:region"], "min_group_size": 20},
})  # fmt: skip


def events(seed: int, n: int = 900) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    ids = local_ids(n)
    out = []
    for i, pid in enumerate(ids):
        gender = str(rng.choice(["F", "M", "X"], p=[0.45, 0.5, 0.05]))
        region = str(rng.choice(["eu", "us"], p=[0.3, 0.7]))
        member = bool(rng.random() < 0.4)
        label = int(rng.random() < 0.5)
        favour = 0.15 if gender == "M" else 0.0
        pred = int(rng.random() < 0.25 + 0.5 * label + favour)
        out.append({
            "pid": pid, "gender": gender, "region": region, "member": member, "label": label, "pred": pred,
            "channel": "web" if i % 3 else "app", "labelled": rng.random() < 0.9,
        })  # fmt: skip
    return out


def group_of(value: Any) -> str:
    """The group text stage 1 gives a value: booleans are "true"/"false"."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_stage1(rows: list[dict[str, Any]], chunk: int) -> list[WindowBundle]:
    config = Settings(_env_file=None, chunk_size=chunk, max_partial_bytes=10_000_000)  # type: ignore[call-arg]
    out = Outputs()
    stage = Stage1(config, {"m": SPEC}, lambda m, v: None, out, partitions=1, clock=lambda: NOW_S)
    predictions = [
        Message(
            orjson.dumps(
                {
                    "prediction_id": r["pid"],
                    "model_id": "m",
                    "ts": "2025-12-31T23:59:00Z",
                    "prediction": r["pred"],
                    "score": 0.5,
                    "features": {"amount": 1.0, "gender": r["gender"], "member": r["member"]},
                    "tags": {"region": r["region"], "channel": r["channel"]},
                }
            ),
            i,
        )
        for i, r in enumerate(rows)
    ]
    labels = [
        Message(
            orjson.dumps(
                {
                    "prediction_id": r["pid"],
                    "model_id": "m",
                    "label": r["label"],
                    "ts": "2025-12-31T23:59:30Z",
                }
            ),
            i,
            "ground-truth",
        )
        for i, r in enumerate(rows)
        if r["labelled"]
    ]
    for start in range(0, len(predictions), 250):  # several runs: groups wait in the join store
        stage.process("predictions", 0, predictions[start : start + 250])
    stage.process("ground-truth", 0, labels)
    stage.publish_revisions(0.0)
    # Partials travel as JSON: read them back as stage 2 does.
    return [WindowBundle.from_dict(orjson.loads(orjson.dumps(p.bundle.to_dict()))) for p in out.sent]


def whole_model(bundles: list[WindowBundle]) -> WindowBundle:
    return reduce(WindowBundle.merge, [b for b in bundles if b.key.segment == ""])


def test_published_gaps_and_rates_equal_fairlearn_on_the_same_events() -> None:
    rows = events(1)
    bundle = whole_model(run_stage1(rows, chunk=200))
    points = {(p.metric, p.feature): p for p in window_metrics(bundle, SPEC, None)}
    labelled = [r for r in rows if r["labelled"]]
    y_true = np.array([r["label"] for r in labelled])
    y_pred = np.array([r["pred"] for r in labelled])
    worst = 0.0
    for attribute, column in (("gender", "gender"), ("member", "member"), ("tag:region", "region")):
        groups = np.array([group_of(r[column]) for r in labelled])
        kw = {"sensitive_features": groups}
        # Selection rates use every prediction, labelled or not.
        all_groups = np.array([group_of(r[column]) for r in rows])
        all_pred = np.array([r["pred"] for r in rows])
        small = {g for g in set(all_groups) if (all_groups == g).sum() < 20}
        big = ~np.isin(all_groups, list(small))
        expected_dp = fm.demographic_parity_difference(
            all_pred[big], all_pred[big], sensitive_features=all_groups[big]
        )
        big_l = ~np.isin(groups, list(small))
        expected = {
            m.DEMOGRAPHIC_PARITY_DIFFERENCE: expected_dp,
            m.EQUALIZED_ODDS_DIFFERENCE: fm.equalized_odds_difference(
                y_true[big_l], y_pred[big_l], sensitive_features=groups[big_l]
            ),
            m.EQUAL_OPPORTUNITY_DIFFERENCE: fm.equal_opportunity_difference(
                y_true[big_l], y_pred[big_l], sensitive_features=groups[big_l]
            ),
        }
        for metric, value in expected.items():
            worst = max(worst, abs(points[(metric, attribute)].value - value))
        frame = fm.MetricFrame(metrics={"tpr": fm.true_positive_rate, "fpr": fm.false_positive_rate},
                               y_true=y_true, y_pred=y_pred, **kw).by_group  # fmt: skip
        for group in sorted(set(all_groups) - small):
            feature = m.fairness_group(attribute, group)
            worst = max(worst, abs(points[(m.FAIRNESS_TPR, feature)].value - frame.loc[group, "tpr"]))
            worst = max(worst, abs(points[(m.FAIRNESS_FPR, feature)].value - frame.loc[group, "fpr"]))
        assert points[(m.FAIRNESS_GROUPS_TOO_FEW, attribute)].value == len(small)
    assert worst <= 1e-9
    # gender X is 5 % of 900 predictions: above the minimum of 20 here.
    assert points[(m.FAIRNESS_GROUP_SIZE, "gender=X")].details["too_few"] is False
    assert points[(m.DEMOGRAPHIC_PARITY_DIFFERENCE, "gender")].details["highest"] == "M"
    assert {p.segment for p in window_metrics(whole_model(run_stage1(rows, 200)), SPEC, None)} == {""}


def test_a_small_group_is_reported_too_few_and_left_out_of_the_gaps() -> None:
    rows = events(2, n=300)  # gender X: about 15 predictions, fewer than 20
    bundle = whole_model(run_stage1(rows, chunk=100))
    points = {(p.metric, p.feature): p for p in window_metrics(bundle, SPEC, None)}
    size = points[(m.FAIRNESS_GROUP_SIZE, "gender=X")]
    assert size.value < 20 and size.details["too_few"] is True
    assert (m.FAIRNESS_SELECTION_RATE, "gender=X") not in points
    gap = points[(m.DEMOGRAPHIC_PARITY_DIFFERENCE, "gender")]
    assert gap.details["groups"] == ["F", "M"] and gap.details["too_few"] == ["X"]
    assert points[(m.FAIRNESS_GROUPS_TOO_FEW, "gender")].value == 1


def test_partials_merge_to_the_same_counts_however_the_events_were_chunked() -> None:
    rows = events(3, n=400)
    merged = [whole_model(run_stage1(rows, chunk)).fairness for chunk in (7, 100, 1000)]
    assert merged[0] is not None and merged[0].to_dict() == merged[1].to_dict() == merged[2].to_dict()  # type: ignore[union-attr]
    segments = {b.key.segment for b in run_stage1(rows, 100)}
    assert segments == {"", "channel=web", "channel=app"}  # segments get their own fairness counts


def test_a_partial_written_before_fairness_still_loads() -> None:
    bundle = whole_model(run_stage1(events(4, n=50), chunk=100))
    old = bundle.to_dict()
    del old["fairness"]
    loaded = WindowBundle.from_dict(old)
    assert loaded.fairness is None
    assert not [p for p in window_metrics(loaded, SPEC, None) if p.metric in m.FAIRNESS_METRICS]
    assert loaded.merge(bundle).fairness == bundle.fairness


def test_rules_on_fairness_gaps_fire_per_attribute() -> None:
    from retrain_trigger.rules import RuleEngine

    rules = [
        {"name": "parity", "metric": m.DEMOGRAPHIC_PARITY_DIFFERENCE, "feature": "gender", "segment": "",
         "op": ">", "threshold": 0.05},
        {"name": "odds", "metric": m.EQUALIZED_ODDS_DIFFERENCE, "feature": "any", "segment": "", "op": ">",
         "threshold": 0.99},
    ]  # fmt: skip
    spec = parse_spec({**SPEC.model_dump(by_alias=True, exclude_none=True), "alerts": rules})
    points = window_metrics(whole_model(run_stage1(events(1), chunk=200)), spec, None)
    alerts = RuleEngine(spec).observe_all(points)
    assert [(a.rule, a.feature, a.state.value) for a in alerts] == [("parity", "gender", "firing")]
    assert "demographic_parity_difference[gender]" in alerts[0].message


@pytest.mark.parametrize("kind", ["boolean", "categorical", "tag"])
def test_the_join_store_and_the_batch_fold_give_a_value_the_same_group(kind: str) -> None:
    from streams.fairness import group_column, group_text

    values = [True, False, 0, 1, 1.0, 0.0, 2, -1, 0.5, "F", "", "true", None, float("nan")]
    column = np.array(values, dtype=object)
    assert group_column(column, kind).tolist() == [group_text(v, kind) for v in values]
