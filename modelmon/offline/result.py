"""What :func:`modelmon.offline.compare` returns: the metric points as DataFrames, and the HTML report.

The report is ``modelmon report``'s own: the points are written to a scratch database of an
embedded ClickHouse engine (in memory by default) through the sink's writer, and
:func:`dashboards.report.write_report` runs the panels' SQL on them as it does on a worker's data.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path

import pandas as pd

from detectors.profiles import ReferenceProfile
from modelmon import metrics as m
from modelmon.events import MetricPoint
from modelmon.spec import ModelSpec
from streams.finalize import WINDOW_FIDELITY

OFFLINE_DATABASE = "modelmon_offline"
"""The scratch database the report's points are written to (emptied before and after)."""
RETENTION_DAYS = 36_500
"""The scratch tables' TTL: old windows must not expire before the report reads them."""
DRIFT_METHODS = frozenset(m.DRIFT_METRICS)
PERFORMANCE = (m.EVENTS, m.LABELS, m.LABEL_COVERAGE, *m.CLASSIFICATION_METRICS, *m.REGRESSION_METRICS)
_REPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class OfflineResult:
    """The metric points of every window of the current data, and views of them.

    ``points`` are the :class:`~modelmon.events.MetricPoint` objects the stream would publish
    (docs/metric-names.md); ``notes`` says what was left out and why.
    """

    spec: ModelSpec
    reference: ReferenceProfile
    points: list[MetricPoint]
    notes: list[str] = field(default_factory=list)

    @cached_property
    def metrics(self) -> pd.DataFrame:
        """One row per point: window_start, window_end, segment, metric, feature, value, and for drift
        scores the method, threshold, p_value and drifted verdict (else missing); details as a dict."""
        records = []
        for p in self.points:
            drift = p.metric in DRIFT_METHODS
            records.append({
                "window_start": p.window_start, "window_end": p.window_end, "segment": p.segment,
                "metric": p.metric, "feature": p.feature, "value": p.value,
                "method": p.details.get("method") if drift else None,
                "threshold": p.details.get("threshold") if drift else None,
                "p_value": p.details.get("p_value") if drift else None,
                "drifted": p.details.get("drifted") if drift else None,
                "details": p.details,
            })  # fmt: skip
        columns = ["window_start", "window_end", "segment", "metric", "feature", "value", "method"]
        return pd.DataFrame.from_records(
            records, columns=[*columns, "threshold", "p_value", "drifted", "details"]
        )

    @property
    def drift(self) -> pd.DataFrame:
        """Per window and feature (``__prediction__`` is the model output): method, score, threshold,
        p_value and the drifted verdict (after the house's noise control); the whole model only."""
        frame = self.metrics
        rows = frame[frame["metric"].isin(DRIFT_METHODS) & (frame["segment"] == "")]
        out = rows[["window_start", "feature", "method", "value", "threshold", "p_value", "drifted"]]
        out = out.rename(columns={"value": "score"}).astype({"drifted": bool})
        return out.sort_values(["window_start", "feature"]).reset_index(drop=True)

    @property
    def drifted_features(self) -> list[str]:
        """Features drifted in any window (the whole model)."""
        drift = self.drift
        return sorted(set(drift.loc[drift["drifted"], "feature"]))

    @property
    def performance(self) -> pd.DataFrame:
        """Per window and segment: events, labels, label coverage and the task's performance metrics."""
        return self._wide(PERFORMANCE)

    @property
    def fidelity(self) -> pd.DataFrame:
        """Data fidelity per window, segment, metric and feature ('' = the whole event)."""
        frame = self.metrics
        names = {*m.FEATURE_FIDELITY_METRICS, *WINDOW_FIDELITY.values()}
        rows = frame[frame["metric"].isin(names)]
        return rows[["window_start", "segment", "metric", "feature", "value"]].reset_index(drop=True)

    def _wide(self, names: tuple[str, ...]) -> pd.DataFrame:
        frame = self.metrics
        rows = frame[frame["metric"].isin(names) & (frame["feature"] == "")]
        wide = rows.pivot_table(index=["window_start", "segment"], columns="metric", values="value")
        ordered = [name for name in names if name in wide.columns]
        wide = wide[ordered].reset_index().rename_axis(columns=None)
        counts = [name for name in (m.EVENTS, m.LABELS) if name in wide and wide[name].notna().all()]
        return wide.astype(dict.fromkeys(counts, "int64"))

    # -- the report ---------------------------------------------------------------------------
    def save_report(self, out_dir: str | Path, *, engine: str = "chdb://memory") -> Path:
        """``modelmon report``'s PNG files and HTML page for these points, in ``out_dir``; the page's path.

        ``engine`` is the embedded ClickHouse (a ``chdb://`` DSN) the points are written to, in a
        scratch database of their own: chdb runs one engine per process, so in a process that
        already opened one on a directory, pass that DSN.
        """
        from dashboards.report import write_report
        from sinks.clickhouse import ClickHouseError, connect, parse_dsn
        from sinks.migrate import migrate
        from sinks.writer import ClickHouseWriter

        target = parse_dsn(engine)
        if target.kind != "chdb":
            raise ValueError(f"engine must be an embedded chdb:// DSN, got {engine!r}")
        location = "memory" if target.path is None else str(target.path)
        if not self.points:
            raise ValueError("no metric points to report")
        out = Path(out_dir)
        starts = [p.window_start for p in self.points]
        end = max(p.window_end for p in self.points)
        since = end - min(starts) + timedelta(seconds=1)
        with _REPORT_LOCK:
            try:
                client = connect(f"chdb://{location}?database={OFFLINE_DATABASE}")
            except ClickHouseError as error:
                raise RuntimeError(f"{error} (pass engine= the chdb:// DSN this process uses)") from None
            migrate(client, ttl_days=RETENTION_DAYS)
            client.command("TRUNCATE TABLE IF EXISTS metric_points")
            try:
                ClickHouseWriter(client, max_attempts=1).write(self.points)
                return write_report(client, [self.spec.model_id], out, since, now=end,
                                    specs={self.spec.model_id: self.spec})  # fmt: skip
            finally:
                client.command("TRUNCATE TABLE IF EXISTS metric_points")

    def to_html(self, path: str | Path, *, engine: str = "chdb://memory") -> Path:
        """The report as one self-contained HTML file (pictures embedded) at ``path``."""
        target = Path(path)
        with tempfile.TemporaryDirectory(prefix="modelmon-report-") as scratch:
            page = self.save_report(scratch, engine=engine)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, target)
        return target

    def _repr_html_(self) -> str:
        drifted = ", ".join(self.drifted_features) or "none"
        windows = len({p.window_start for p in self.points})
        return (
            f"<p><b>modelmon offline</b>: model {self.spec.model_id!r}, {windows} window(s), "
            f"drifted: {drifted}</p>" + self.drift.to_html(index=False)
        )

    def __repr__(self) -> str:
        windows = len({p.window_start for p in self.points})
        return (
            f"OfflineResult(model={self.spec.model_id!r}, windows={windows}, points={len(self.points)}, "
            f"drifted={self.drifted_features})"
        )
