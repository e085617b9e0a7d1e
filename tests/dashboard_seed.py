"""Seeded ClickHouse rows for the dashboard and report tests: what the sink stores for two models.

Written through the real ``ClickHouseWriter`` (metric points, alerts, retrain requests, dead
letters) and ``store_reference`` (reference profiles), so the rows have the shape the pipeline
gives them whatever the table columns become.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.profiles import ReferenceProfile
from modelmon.events import Alert, AlertState, DeadLetter, MetricPoint, RetrainRequested, Severity
from sinks.clickhouse import Client
from sinks.references import store_reference
from sinks.writer import ClickHouseWriter

WINDOW = timedelta(minutes=1)
WINDOWS = 12
CLASSIFIER = "fraud-detector"
REGRESSOR = "house-prices"
MODELS = (CLASSIFIER, REGRESSOR)


@dataclass(frozen=True)
class Seeded:
    start: datetime  # first window start
    end: datetime  # last window end
    points: int

    @property
    def range(self) -> tuple[datetime, datetime]:
        """A dashboard time range that holds every seeded row."""
        return self.start - timedelta(minutes=5), self.end + timedelta(minutes=5)


def _model_points(model: str, start: datetime) -> list[MetricPoint]:
    classifier = model == CLASSIFIER
    features = ("amount", "country") if classifier else ("area_m2", "region")
    points = []
    for w in range(WINDOWS):
        ws, we = start + w * WINDOW, start + (w + 1) * WINDOW
        drift = 0.02 + 0.04 * w  # grows: drifted from window 5 on (psi >= 0.2)
        for version in ("1", "2") if w >= WINDOWS // 2 else ("1",):
            for segment in ("", "country=DE" if classifier else "region=north"):
                scale = 1.0 if segment == "" else 0.4
                events = 600 * scale
                labels = events * (0.5 + 0.03 * w)

                key = {"model_id": model, "model_version": version, "segment": segment}
                key |= {"window_start": ws, "window_end": we, "source": "stage2", "revision": 1}

                def add(
                    metric: str, value: float, feature: str = "", key: dict = key, **details: object
                ) -> None:
                    points.append(
                        MetricPoint(**key, metric=metric, feature=feature, value=value, details=details)
                    )

                add("events", events)
                add("labels", labels)
                add("label_coverage", labels / events)
                if classifier:
                    for i, metric in enumerate(("accuracy", "precision", "recall", "f1", "roc_auc")):
                        realized = 0.95 - 0.015 * w - 0.01 * i
                        positives = {"precision": int(0.35 * labels), "recall": int(0.3 * labels)}
                        tested = {"denominator": positives[metric]} if metric in positives else {}
                        add(metric, realized, n=int(labels), **tested)  # denominator: versions test
                        if segment == "":  # estimated from the scores: 0.01 over, band +- 0.03
                            add(f"estimated_{metric}", realized + 0.01)
                            add(f"estimated_{metric}_lower", realized - 0.02)
                            add(f"estimated_{metric}_upper", realized + 0.04)
                            add(f"estimation_error_{metric}", 0.01, labels=int(labels), events=int(events))
                    add("log_loss", 0.2 + 0.02 * w)
                else:
                    add("mae", 20_000 + 3_000 * w)
                    add("rmse", 30_000 + 4_000 * w)
                    add("mape", 0.1 + 0.01 * w)
                    add("r2", 0.9 - 0.02 * w)
                add("late_events", w % 2)
                if segment == "" and w in (2, 3):  # partials that came after their window's retention
                    expired = {**key, "source": f"expired|predictions|0|{w}", "revision": 9}
                    points.append(MetricPoint(**expired, metric="expired_events", value=7.0))
                add("duplicate_ids", w % 3)
                add("duplicate_rate", (w % 3) / events)
                add("required_missing_event_rate", 0.01 * (w % 4))
                add("unknown_feature_rate", 0.002 * w)
                for q, base in (("mean", 120), ("p50", 100), ("p95", 400), ("p99", 800), ("max", 1500)):
                    add(f"lateness_{q}_ms", base + 10 * w)
                    add(f"label_delay_{q}_ms", 60_000 + base * 100)
                add("drift_share", min(1.0, drift * 2.5), drifted_features=[], compared=2)
                if segment == "":  # what moved (streams.attribution), on the model-level points
                    moved = seeded_attribution(features, drift, classifier)
                    for point in points:
                        own = (point.segment, point.model_version, point.window_start) == ("", version, ws)
                        if own and point.metric in ("drift_share", "accuracy", "mae"):
                            point.details["attribution"] = moved
                add("dataset_drifted", float(drift * 2.5 >= 0.5))
                add("drifted_important_features", float(drift >= 0.2))
                for index, feature in enumerate(features):
                    # psi, a distance: drifts at score >= 0.2. chi_square, a p-value test: drifts at
                    # p < 0.05; p = 0.05 ** (drift * 10) crosses it where drift * 2 reaches 0.2.
                    if index == 0:
                        add("psi", drift, feature, method="psi", threshold=0.2, p_value=None)
                    else:
                        p_value = 0.05 ** (drift * 10)
                        add(
                            "chi_square",
                            100 * drift,
                            feature,
                            method="chi_square",
                            threshold=0.05,
                            p_value=p_value,
                            adjusted_p_value=p_value,
                        )
                    add(
                        "drifted",
                        float(drift * (1 + index) >= 0.2),
                        feature,
                        method="psi" if index == 0 else "chi_square",
                    )
                    add("missing_rate", 0.005 * (w % 5) * (1 + index), feature)
                    add("type_violation_rate", 0.001 * (w % 2), feature)
                    if index == 0:
                        add("range_violation_rate", 0.002 * w, feature)
                    else:
                        add("unseen_category_rate", 0.01 * w, feature)
                add("psi", drift / 2, "__prediction__", method="psi", threshold=0.2)
                add("drifted", float(drift / 2 >= 0.2), "__prediction__", method="psi")
    return points


def seeded_attribution(features: tuple[str, ...], drift: float, classifier: bool) -> dict[str, object]:
    """details.attribution as streams.attribution writes it: the first feature moves most."""
    lines = [
        {"feature": name, "method": "psi", "score": drift / (1 + i), "threshold": 0.2,
         "ratio": drift / (1 + i) / 0.2, "importance": 0.5, "importance_source": "equal",
         "weighted": drift / (1 + i) / 0.2}
        for i, name in enumerate(features)
    ]  # fmt: skip
    segment = "country=DE" if classifier else "region=north"
    segments = [{"segment": segment, "metric": "accuracy" if classifier else "mae", "value": 0.7,
                 "baseline": 0.8, "share": 0.4, "contribution": -0.04}]  # fmt: skip
    return {"features": lines, "segments": segments, "segment_baseline": "window"}


def _alerts(start: datetime) -> list[Alert]:
    def alert(model: str, rule: str, metric: str, feature: str, state: AlertState, w: int) -> Alert:
        return Alert(
            dedup_key=f"{model}|{rule}|{feature}|",
            model_id=model,
            rule=rule,
            state=state,
            severity=Severity.CRITICAL,
            metric=metric,
            feature=feature,
            value=0.5,
            threshold=0.2,
            window_start=start + w * WINDOW,
            window_end=start + (w + 1) * WINDOW,
            message=f"{metric} crossed",
            ts=start + (w + 1) * WINDOW,
        )

    return [
        alert(CLASSIFIER, "feature-drift", "psi", "amount", AlertState.PENDING, 4),
        alert(CLASSIFIER, "feature-drift", "psi", "amount", AlertState.FIRING, 5),
        alert(CLASSIFIER, "accuracy-drop", "accuracy", "", AlertState.PENDING, 6),
        alert(CLASSIFIER, "accuracy-drop", "accuracy", "", AlertState.FIRING, 8),
        alert(REGRESSOR, "error-up", "mae", "", AlertState.FIRING, 7),
        alert(REGRESSOR, "error-up", "mae", "", AlertState.RESOLVED, 10),
    ]


def seed(client: Client, *, now: datetime | None = None) -> Seeded:
    """Insert 12 one-minute windows ending about now for both models; return the time span."""
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    start = now - WINDOWS * WINDOW
    points = [p for model in MODELS for p in _model_points(model, start)]
    points += _fairness_points(start) + _version_pair_points(start)
    events: list[object] = [*points, *_alerts(start)]
    events.append(
        RetrainRequested(
            idempotency_key=f"{CLASSIFIER}|1|seed",
            model_id=CLASSIFIER,
            reason="accuracy-drop firing",
            alert_ids=["a1"],
            requested_at=start + 9 * WINDOW,
        )
    )
    for i, kind in enumerate(("invalid_json", "invalid_json", "unknown_model")):
        events.append(
            DeadLetter(
                topic="predictions",
                partition=0,
                offset=i,
                payload="{",
                reason=f"bad message {i}",
                error_type=kind,
                ts=start + (i + 1) * WINDOW,
            )
        )
    ClickHouseWriter(client).write(events)  # type: ignore[arg-type]
    rng = np.random.default_rng(0)
    for model, (num, cat), cats in (
        (CLASSIFIER, ("amount", "country"), ["DE", "FR", "US"]),
        (REGRESSOR, ("area_m2", "region"), ["north", "south"]),
    ):
        for version in ("1", "2"):
            profile = ReferenceProfile.from_data(
                {num: rng.lognormal(4, 1, 500), cat: rng.choice(cats, 500)},
                {num: "numerical", cat: "categorical"},
                sample_size=64,
            )
            store_reference(client, model, version, profile, "first_n", created_at=start)
    return Seeded(start, start + WINDOWS * WINDOW, len(points))


# -- fairness: the classifier's gaps and per-group rates (docs/fairness.md) ------------------------
def _fairness_points(start: datetime) -> list[MetricPoint]:
    """Attribute ``tag:region`` of the classifier: groups eu, us, and a too-small group xx."""
    points = []
    for w in range(WINDOWS):
        key: dict[str, Any] = {
            "model_id": CLASSIFIER,
            "model_version": "1",
            "segment": "",
            "source": "stage2",
            "revision": 1,
        }
        key |= {"window_start": start + w * WINDOW, "window_end": start + (w + 1) * WINDOW}
        rates = {"eu": (0.30, 0.70, 0.10), "us": (0.30 + 0.02 * w, 0.72, 0.12)}
        for group, (selection, tpr, fpr) in rates.items():
            feature = f"tag:region={group}"
            points.append(MetricPoint(**key, metric="fairness_group_size", feature=feature, value=300.0,
                                      details={"too_few": False}))  # fmt: skip
            for metric, value in (("fairness_selection_rate", selection), ("fairness_tpr", tpr),
                                  ("fairness_fpr", fpr)):  # fmt: skip
                points.append(MetricPoint(**key, metric=metric, feature=feature, value=value))
        points.append(MetricPoint(**key, metric="fairness_group_size", feature="tag:region=xx", value=4.0,
                                  details={"too_few": True}))  # fmt: skip
        gaps = {"demographic_parity_difference": 0.02 * w, "demographic_parity_ratio": 0.3 / (0.3 + 0.02 * w),
                "equal_opportunity_difference": 0.02, "equalized_odds_difference": 0.02}  # fmt: skip
        for metric, value in gaps.items():
            points.append(MetricPoint(**key, metric=metric, feature="tag:region", value=value))
    return points


# -- versions compared per window (streams.version_pairs): under version 2, versus 1 ----------------
def _version_pair_points(start: datetime) -> list[MetricPoint]:
    """Windows where both versions run: p-value falling under 0.05 from the 9th window, agreement 0.9."""
    points = []
    for model in MODELS:
        for w in range(WINDOWS // 2, WINDOWS):
            key: dict[str, Any] = {"model_id": model, "model_version": "2", "segment": "", "source": "stage2"}
            key |= {"revision": 1, "feature": "versus=1", "window_start": start + w * WINDOW}
            key["window_end"] = start + (w + 1) * WINDOW
            p_value = 0.5 / 2 ** (w - WINDOWS // 2)
            points.append(MetricPoint(**key, metric="version_prediction_drift", value=p_value, details={
                "method": "chi_square", "p_value": p_value, "threshold": 0.05, "drifted": p_value < 0.05,
            }))  # fmt: skip
            points.append(MetricPoint(**key, metric="version_agreement", value=0.9, details={
                "matched": 200, "agreed": 180, "lower": 0.85, "upper": 0.93, "exact": False,
            }))  # fmt: skip
    return points
