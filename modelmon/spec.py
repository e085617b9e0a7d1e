"""Model specs: what a model looks like, how to watch it, and loading them from YAML with clear errors."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelmon.events import Severity
from modelmon.fairness_spec import FairnessSpec, check_fairness
from modelmon.kinds import FeatureKind


class Task(StrEnum):
    BINARY = "binary"
    MULTICLASS = "multiclass"
    REGRESSION = "regression"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> timedelta:
    """Parse '30s', '5m', '2h', '7d' (or a number of seconds) into a timedelta.

    >>> parse_duration("90m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(15)
    datetime.timedelta(seconds=15)
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    raise ValueError(f"{value!r} is not a duration; write e.g. '30s', '5m', '2h' or '7d'")


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FeatureSpec(_Spec):
    type: FeatureKind
    required: bool = Field(default=False, description="An event without it goes to dead-letter.")
    min: float | None = Field(default=None, description="Lowest valid value (numerical).")
    max: float | None = Field(default=None, description="Highest valid value (numerical).")
    allowed: list[str] | None = Field(default=None, description="Known categories (categorical).")
    drift_method: str | None = Field(default=None, description="Overrides the model's drift method.")
    drift_threshold: float | None = Field(default=None, description="Overrides the method's threshold.")
    important: bool = Field(default=False, description="Counts for 'drift on K important features'.")
    importance: float | None = Field(
        default=None, ge=0, allow_inf_nan=False,
        description="Weight of the feature's drift in alert attribution (else estimated on the reference).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> FeatureSpec:
        if self.type is not FeatureKind.NUMERICAL and (self.min is not None or self.max is not None):
            raise ValueError("min/max apply to numerical features only")
        if self.type is not FeatureKind.CATEGORICAL and self.allowed is not None:
            raise ValueError("allowed applies to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ReferenceSpec(_Spec):
    """Where the drift reference comes from."""

    source: Literal["file", "first_n", "first_period", "rolling"] = "first_n"
    path: str | None = Field(
        default=None,
        description="CSV or Parquet file (source: file); a relative path is relative to the spec file.",
    )
    n: int = Field(default=5000, ge=10, description="Events in the reference (source: first_n).")
    period: str = Field(default="1h", description="Length of the first period (source: first_period).")

    @model_validator(mode="after")
    def _path_for_file(self) -> ReferenceSpec:
        if self.source == "file" and not self.path:
            raise ValueError("source 'file' needs 'path' (a CSV or Parquet file)")
        if self.source == "rolling":
            # Stage 1 bins each window on its reference's edges; a reference changing every window
            # would need every window re-binned or compared unbinned (docs/references.md).
            raise ValueError(
                "source 'rolling' (the previous window as the reference) is not supported yet; "
                "use first_n, first_period or file"
            )
        parse_duration(self.period)
        return self


class DriftSpec(_Spec):
    method: str = Field(default="auto", description="Drift method name, or 'auto' to choose by data.")
    threshold: float | None = Field(default=None, description="None = the method's default.")


ChangeDetectorName = Literal["adwin", "page_hinkley", "kswin"]
ChangeSeries = Literal["error", "drift_share", "feature_drift"]


def _every_series() -> list[ChangeSeries]:
    return ["error", "drift_share", "feature_drift"]


class ChangeSpec(_Spec):
    """Streaming change detectors that stage 2 runs on per-window metric series (streams/change.py)."""

    detectors: list[ChangeDetectorName] | None = Field(
        default=None,
        description="Detectors run on every series; [] = off; unset = adwin, plus page_hinkley on fractions.",
    )
    metrics: list[ChangeSeries] = Field(
        default_factory=_every_series,
        description="Series: error (1 - accuracy, or mae), drift_share, feature_drift (per feature).",
    )
    params: dict[ChangeDetectorName, dict[str, Any]] = Field(
        default_factory=dict,
        description="Detector settings by detector name; checked when the worker starts.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ChangeSpec:
        entries: dict[str, list[str]] = {
            "detectors": list(self.detectors or []),
            "metrics": list(self.metrics),
        }
        for name, values in entries.items():
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{name} must not repeat entries; repeated: {repeated}")
        running = ["adwin", "page_hinkley"] if self.detectors is None else self.detectors
        unused = sorted(set(self.params) - set(running))
        if unused:
            raise ValueError(f"params given for {unused}, which do not run (detectors: {running})")
        return self


class AlertRuleSpec(_Spec):
    name: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    feature: str = Field(default="any", description="A feature name, '' for model-level, or 'any'.")
    segment: str = Field(default="any")
    op: Literal[">", ">=", "<", "<="] = ">="
    threshold: float
    for_windows: int = Field(default=1, ge=1, alias="for", description="Consecutive windows to fire.")
    resolve_threshold: float | None = Field(default=None, description="Hysteresis: resolve beyond this.")
    severity: Severity = Severity.WARNING
    cooldown: str = "30m"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @model_validator(mode="after")
    def _hysteresis(self) -> AlertRuleSpec:
        resolve = self.resolve_threshold
        if resolve is None:
            return self
        if self.op in (">", ">=") and resolve > self.threshold:
            raise ValueError(
                f"resolve_threshold ({resolve}) must not be above threshold ({self.threshold}) for op "
                f"'{self.op}': the alert resolves once the value is back below it"
            )
        if self.op in ("<", "<=") and resolve < self.threshold:
            raise ValueError(
                f"resolve_threshold ({resolve}) must not be below threshold ({self.threshold}) for op "
                f"'{self.op}': the alert resolves once the value is back above it"
            )
        return self


class PerformanceTriggerSpec(_Spec):
    """Retrain when a model-level metric stays below a floor for N consecutive windows."""

    metric: str = Field(default="accuracy", min_length=1, description="e.g. accuracy, f1, roc_auc.")
    threshold: float = Field(description="Retrain when the metric is below this.")
    for_windows: int = Field(default=3, ge=1, alias="for", description="Consecutive windows below it.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetrainSpec(_Spec):
    enabled: bool = False
    on_rules: list[str] = Field(default_factory=list, description="Alert rules that request retraining.")
    min_severity: Severity = Field(
        default=Severity.CRITICAL, description="Without on_rules: firing alerts of this severity or above."
    )
    min_drifted_important_features: int | None = Field(default=None, ge=1)
    performance_below: list[PerformanceTriggerSpec] = Field(
        default_factory=list, description="Model-level metric floors that request retraining."
    )
    cooldown: str = "24h"
    webhook: str | None = Field(default=None, description="Pipeline trigger URL (Airflow, Kubeflow).")
    webhook_format: Literal["json", "slack", "alertmanager"] = "json"
    webhook_secret_env: str | None = Field(
        default=None, description="Environment variable holding the pipeline webhook's signing secret."
    )

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook must be an http:// or https:// URL, got {value!r}")
        return value

    @field_validator("cooldown")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value


class ModelSpec(_Spec):
    """Everything modelmon needs to know about one model."""

    model_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    task: Task
    features: dict[str, FeatureSpec] = Field(min_length=1)
    classes: list[str] | None = Field(default=None, description="Class labels (multiclass, optional).")
    positive_class: str = Field(default="1", description="Label of the positive class (binary).")
    segments: list[str] = Field(default_factory=list, description="Tags whose values are segments.")
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    change: ChangeSpec = Field(default_factory=ChangeSpec)
    alerts: list[AlertRuleSpec] = Field(default_factory=list)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    label_ttl: str = Field(default="7d", description="How long a prediction waits for its label.")
    max_event_age: str | None = Field(
        default=None,
        description="Events older than this go to dead-letter (ts_out_of_range); default "
        "MODELMON_MAX_EVENT_AGE. Raise it to backfill history (docs/operations.md, Backfill).",
    )
    fairness: FairnessSpec | None = Field(default=None, description="Sensitive attributes: fairness.md")
    _fairness = field_validator("fairness")(check_fairness)
    shadow_sample_size: int = Field(
        default=512,
        ge=0,
        description="Requests sampled per window for shadow agreement (0: off): versions.md",
    )

    @field_validator("max_event_age")
    @classmethod
    def _optional_duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value

    @field_validator("label_ttl")
    @classmethod
    def _ttl(cls, value: str) -> str:
        parse_duration(value)
        return value

    # Field validators rather than one model validator, so errors point at 'alerts' / 'retrain'
    # instead of '(top level)'. 'alerts' is declared before 'retrain', so it is in info.data.
    @field_validator("alerts")
    @classmethod
    def _unique_rule_names(cls, rules: list[AlertRuleSpec]) -> list[AlertRuleSpec]:
        names = [rule.name for rule in rules]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"alert rule names must be unique; repeated: {duplicates}")
        return rules

    @field_validator("retrain")
    @classmethod
    def _known_rules(cls, retrain: RetrainSpec, info: ValidationInfo) -> RetrainSpec:
        if "alerts" not in info.data:
            return retrain  # the alerts themselves are invalid; that error is reported already
        names = [rule.name for rule in info.data["alerts"]]
        unknown = [r for r in retrain.on_rules if r not in names]
        if unknown:
            raise ValueError(f"retrain.on_rules names unknown alert rules {unknown}; defined: {names}")
        return retrain

    def required_features(self) -> list[str]:
        return [name for name, feature in self.features.items() if feature.required]


class SpecError(ValueError):
    """A model spec file that cannot be used; the message names the file, the field and the fix."""


_FIXES = {
    "missing": "add this field",
    "extra_forbidden": "remove it or check its spelling",
    "enum": "use one of the values listed",
    "literal_error": "use one of the values listed",
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
    "bool_parsing": "write true or false",
    "string_type": "write a text value",
    "dict_type": "write a mapping (key: value lines)",
    "list_type": "write a list",
    "too_short": "add at least one entry",
    "string_pattern_mismatch": "use letters, digits, '.', '_' or '-' (starting with a letter or digit)",
}


def _format_errors(source: str, error: ValidationError, allowed_fields: Iterable[str]) -> str:
    lines = [f"{source}: invalid model spec"]
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        fix = _FIXES.get(item["type"], "see docs/model-specs.md")
        if item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
            fix += f"; valid top-level fields: {', '.join(allowed_fields)}"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"  - field '{location}': {message} (fix: {fix})")
    return "\n".join(lines)


def parse_spec(data: Any, source: str = "<spec>") -> ModelSpec:
    """Validate one spec given as a dict; errors raise :class:`SpecError` naming ``source``."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a model spec is a mapping with model_id, task and features")
    try:
        return ModelSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(_format_errors(source, error, ModelSpec.model_fields)) from None


def load_spec_file(path: Path) -> list[ModelSpec]:
    """Load a YAML file holding one spec, or ``models: [spec, ...]``."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot read: {error.strerror}") from None
    if isinstance(data, dict) and set(data) == {"models"}:
        items = data["models"]
        if not isinstance(items, list):
            raise SpecError(f"{path}: field 'models': must be a list of model specs")
        return [parse_spec(item, f"{path} (models[{i}])") for i, item in enumerate(items)]
    return [parse_spec(data, str(path))]


def load_specs(path: Path | str) -> dict[str, ModelSpec]:
    """Load every spec from a YAML file or a directory of ``*.yaml``/``*.yml``, keyed by model id."""
    return {model_id: spec for model_id, (spec, _) in load_specs_with_files(path).items()}


def load_specs_with_files(path: Path | str) -> dict[str, tuple[ModelSpec, Path]]:
    """As :func:`load_specs`, with the file each spec was read from."""
    root = Path(path)
    if root.is_dir():
        files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")])
        if not files:
            raise SpecError(f"{root}: no *.yaml model specs in this directory")
    elif root.exists():
        files = [root]
    else:
        raise SpecError(f"{root}: no such file or directory (set MODELMON_MODELS_PATH)")
    specs: dict[str, ModelSpec] = {}
    origin: dict[str, Path] = {}
    for file in files:
        for spec in load_spec_file(file):
            if spec.model_id in specs:
                raise SpecError(
                    f"{file}: field 'model_id': {spec.model_id!r} is also defined in {origin[spec.model_id]} "
                    "(fix: give each model a unique model_id)"
                )
            specs[spec.model_id] = spec
            origin[spec.model_id] = file
    return {model_id: (spec, origin[model_id]) for model_id, spec in specs.items()}
