"""Champion/challenger through stored points: the Versions SQL, ``compare_versions`` and ``report --compare``.

Seeded metric points on chDB, written by the real ``ClickHouseWriter``: 20 one-minute windows of
500 labels per version; in ``ab-better`` version 2 is 3 points more accurate (0.88 against 0.85,
binomial draws), in ``ab-same`` both versions have the same true accuracy. ``_seed_rates``: a binary
model whose version 2 has a higher recall (``ab-rates``, precision and recall points with their
denominators), one stored before the denominator was recorded (``ab-old``) and a multiclass one whose
precision and recall are macro averages (``ab-macro``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dashboards.compare import compare_versions
from dashboards.macros import expand
from dashboards.runner import TimeRange, resolve_variables, run_sql
from dashboards.versions import ACCUMULATED, RATES_ACCUMULATED, versions_dashboard
from detectors.versions import accumulate, compare_rates
from modelmon.events import MetricPoint
from sinks.writer import ClickHouseWriter

pytestmark = pytest.mark.integration
WINDOWS, LABELS = 20, 500


def _seed(client: Any, now: datetime) -> dict[str, list[tuple[int, int, int, int]]]:
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=WINDOWS)
    rng = np.random.default_rng(16)
    counts: dict[str, list[tuple[int, int, int, int]]] = {}
    points = []
    for model, lift in (("ab-better", 0.03), ("ab-same", 0.0)):
        counts[model] = []
        for w in range(WINDOWS):
            ws, we = start + timedelta(minutes=w), start + timedelta(minutes=w + 1)
            correct = {"1": int(rng.binomial(LABELS, 0.85)), "2": int(rng.binomial(LABELS, 0.85 + lift))}
            counts[model].append((correct["1"], LABELS, correct["2"], LABELS))
            for version, right in correct.items():
                key = dict(model_id=model, model_version=version, segment="", window_start=ws, window_end=we)
                key |= {"source": "stage2", "revision": 1, "feature": ""}
                points.append(
                    MetricPoint(**key, metric="accuracy", value=right / LABELS, details={"n": LABELS})
                )
                points.append(MetricPoint(**key, metric="labels", value=float(LABELS)))
            if model == "ab-better":  # stage 2's pair points, under v2 versus v1 (streams.version_pairs)
                pair = {**key, "model_version": "2", "feature": "versus=1"}
                p_value = 0.01 if w % 4 == 0 else 0.4  # drifted in 5 of 20 windows; the last: 0.4
                drift = {"p_value": p_value, "threshold": 0.05, "drifted": p_value < 0.05}
                points.append(
                    MetricPoint(**pair, metric="version_prediction_drift", value=p_value, details=drift)
                )
                matched, agreed = 100 + 10 * w, 90 + 5 * w  # weighted: 2750 / 3900
                share = {"matched": matched, "agreed": agreed}
                points.append(
                    MetricPoint(**pair, metric="version_agreement", value=agreed / matched, details=share)
                )
    ClickHouseWriter(client).write(points)  # type: ignore[arg-type]
    return counts


def test_sql_python_and_verdicts_agree(clickhouse: Any) -> None:
    now = datetime.now(UTC)
    counts = _seed(clickhouse, now)
    time_range = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=5))
    for model, significant in (("ab-better", True), ("ab-same", False)):
        expected = accumulate(counts[model])
        result = compare_versions(clickhouse, model, "1", "2", time_range)
        assert result.total is not None and len(result.windows) == WINDOWS
        assert result.total.p_value == pytest.approx(expected.p_value, rel=1e-12)
        assert result.total.significant is significant, result.summary()
        if significant:
            assert result.total.difference > 0 and "v2 better than v1" in result.summary()
        # the dashboard's accumulated table computes the same numbers in SQL
        chosen = {"model": model, "champion": "1", "challenger": "2"}
        variables = resolve_variables(clickhouse, versions_dashboard(), time_range, chosen)
        sql = run_sql(clickhouse, expand(ACCUMULATED, time_range.start, time_range.end, 1, variables))
        row = dict(zip(sql.columns, sql.rows[0], strict=True))
        assert row["windows"] == WINDOWS and row["n_a"] == row["n_b"] == WINDOWS * LABELS
        for column, value in (
            ("difference", expected.difference),
            ("lower", expected.lower),
            ("upper", expected.upper),
            ("z", expected.z),
        ):
            assert row[column] == pytest.approx(value, abs=1e-9), column
        assert row["p_value"] == pytest.approx(expected.p_value, rel=1e-6, abs=1e-15)
        assert row["verdict"] == ("B better" if significant else "no significant difference")
    with pytest.raises(LookupError):
        compare_versions(clickhouse, "ab-better", "1", "7", time_range)


def test_pair_lines_read_the_stored_version_pair_points(clickhouse: Any) -> None:
    now = datetime.now(UTC)
    _seed(clickhouse, now)
    time_range = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=5))
    result = compare_versions(clickhouse, "ab-better", "1", "2", time_range)
    drift_windows, drifted, latest, agreement_windows, matched, agreement = result.pairs
    assert (drift_windows, drifted, latest) == (WINDOWS, 0.25, 0.4)
    matched_total = sum(100 + 10 * w for w in range(WINDOWS))
    assert (agreement_windows, matched) == (WINDOWS, matched_total)
    assert agreement == pytest.approx(sum(90 + 5 * w for w in range(WINDOWS)) / matched_total, abs=1e-12)
    lines = result.summary().splitlines()
    assert lines[1] == "  prediction drift v2 vs v1: 25% of 20 windows drifted (p < 0.05), latest p = 0.4"
    assert lines[2].startswith("  shadow agreement (same request_id): 70.5% of 3900 sampled requests over 20")
    # the same figures whichever version is called A: the points are found under the later one
    swapped = compare_versions(clickhouse, "ab-better", "2", "1", time_range)
    assert swapped.pairs == result.pairs
    assert compare_versions(clickhouse, "ab-same", "1", "2", time_range).pair_lines() == []


def test_report_compare_command(clickhouse: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmon.app.cli import cli

    _seed(clickhouse, datetime.now(UTC))
    monkeypatch.setattr("sinks.clickhouse.connect", lambda dsn: clickhouse)
    args = ["report", "--compare", "1", "2", "--since", "2h", "--out", str(tmp_path)]
    result = CliRunner().invoke(cli, [*args, "--model", "ab-better", "--model", "ab-same"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    better = next(line for line in lines if line.startswith("ab-better:"))
    assert re.search(r"v2 better than v1 by [23]\.\d points .* p = .* over 20 windows", better), better
    same = next(line for line in lines if line.startswith("ab-same:"))
    assert "no significant difference between v2 and v1" in same
    page = Path(lines[-1]).read_text(encoding="utf-8")
    for model in ("ab-better", "ab-same"):
        png = tmp_path / f"{model}-compare-v1-v2.png"
        assert png.stat().st_size > 10_000
        assert f"alt='{model}: Accuracy: v2 against v1'" in page


Rates = dict[str, list[tuple[float, float, float, float]]]


def _seed_rates(client: Any, now: datetime) -> Rates:
    """Binary confusion counts per window: v2 finds 10 more points of the actual positives."""
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=WINDOWS)
    rng = np.random.default_rng(17)
    stored: Rates = {"precision": [], "recall": []}
    points = []
    for w in range(WINDOWS):
        ws, we = start + timedelta(minutes=w), start + timedelta(minutes=w + 1)
        window: dict[str, list[float]] = {"precision": [], "recall": []}
        for version, recall in (("1", 0.70), ("2", 0.80)):
            positives = int(rng.binomial(LABELS, 0.2))
            tp, fp = int(rng.binomial(positives, recall)), int(rng.binomial(LABELS - positives, 0.05))
            values = {"precision": (tp / (tp + fp), tp + fp), "recall": (tp / positives, positives)}
            for model, average in (("ab-rates", "binary"), ("ab-old", "binary"), ("ab-macro", "macro")):
                key = dict(model_id=model, model_version=version, segment="", window_start=ws, window_end=we)
                key |= {"source": "stage2", "revision": 1, "feature": ""}
                for metric, (value, denominator) in values.items():
                    details: dict[str, Any] = {"n": LABELS, "average": average}
                    if model == "ab-rates":
                        details["denominator"] = denominator
                    points.append(MetricPoint(**key, metric=metric, value=value, details=details))
                accuracy = (LABELS - (positives - tp) - fp) / LABELS
                points.append(MetricPoint(**key, metric="accuracy", value=accuracy, details={"n": LABELS}))
            for metric, pair in values.items():
                window[metric].extend(pair)
        for metric, (va, da, vb, db) in window.items():
            stored[metric].append((va, da, vb, db))
    ClickHouseWriter(client).write(points)  # type: ignore[arg-type]
    return stored


def test_precision_and_recall_tested_with_their_denominators(clickhouse: Any) -> None:
    now = datetime.now(UTC)
    stored = _seed_rates(clickhouse, now)
    time_range = TimeRange(now - timedelta(hours=1), now + timedelta(minutes=5))
    result = compare_versions(clickhouse, "ab-rates", "1", "2", time_range)
    tested = dict(result.rates)
    chosen = {"model": "ab-rates", "champion": "1", "challenger": "2"}
    variables = resolve_variables(clickhouse, versions_dashboard(), time_range, chosen)
    sql = run_sql(clickhouse, expand(RATES_ACCUMULATED, time_range.start, time_range.end, 1, variables))
    rows = {row[0]: dict(zip(sql.columns, row, strict=True)) for row in sql.rows}
    assert sorted(tested) == sorted(rows) == ["precision", "recall"]
    for metric in ("precision", "recall"):
        expected = compare_rates(stored[metric])
        found = tested[metric]
        assert not isinstance(found, str) and found.windows == WINDOWS
        assert (found.n_a, found.n_b) == (expected.n_a, expected.n_b)
        assert found.p_value == pytest.approx(expected.p_value, rel=1e-12)
        row = rows[metric]  # the dashboard's table: the same numbers in SQL
        assert (row["windows"], row["n_a"], row["n_b"]) == (WINDOWS, expected.n_a, expected.n_b)
        for column in ("difference", "lower", "upper", "z"):
            assert row[column] == pytest.approx(getattr(expected, column), abs=1e-9), (metric, column)
        assert row["p_value"] == pytest.approx(expected.p_value, rel=1e-6, abs=1e-15)
    recall = tested["recall"]
    assert not isinstance(recall, str) and recall.significant and recall.difference > 0
    assert rows["recall"]["verdict"] == "B better"
    assert any(line.startswith("  recall: v2 better than v1 by") for line in result.summary().splitlines())
    old = compare_versions(clickhouse, "ab-old", "1", "2", time_range)
    assert old.rate_lines() == [
        "  precision: not tested: no denominator stored",
        "  recall: not tested: no denominator stored",
    ]
    macro = compare_versions(clickhouse, "ab-macro", "1", "2", time_range)
    assert macro.rate_lines()[1] == "  recall: not tested: macro-averaged over classes, not one proportion"
    assert old.total is not None  # accuracy is still tested


def test_report_compare_prints_and_shows_the_rate_verdicts(
    clickhouse: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelmon.app.cli import cli

    _seed_rates(clickhouse, datetime.now(UTC))
    monkeypatch.setattr("sinks.clickhouse.connect", lambda dsn: clickhouse)
    args = ["report", "--compare", "1", "2", "--since", "2h", "--out", str(tmp_path), "--model", "ab-rates"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("ab-rates: accuracy: ")
    assert lines[1].startswith("  precision: ") and lines[2].startswith("  recall: v2 better than v1")
    page = Path(lines[-1]).read_text(encoding="utf-8")
    assert "<figcaption><pre>ab-rates: accuracy: " in page and "  recall: v2 better than v1" in page
