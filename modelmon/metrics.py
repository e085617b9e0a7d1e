"""The names of the metrics modelmon publishes (docs/metric-names.md), declared once.

Stage 2 publishes them (``streams.finalize``, ``streams.change``); the dashboards
(``dashboards.sql``), alert rules (``metric:`` in a model spec) and the retrain policy query them.
They are stored in ClickHouse and written in users' alert rules: renaming one is a breaking change.

>>> LATENESS_METRICS[:2], LABEL_DELAY_METRICS[-1]
(('lateness_mean_ms', 'lateness_p50_ms'), 'label_delay_max_ms')
>>> is_published("psi"), is_published("drift_share"), is_published("drift_shares")
(True, True, False)
>>> estimated("accuracy"), estimated_lower("f1"), estimation_error("roc_auc")
('estimated_accuracy', 'estimated_f1_lower', 'estimation_error_roc_auc')
"""

from __future__ import annotations

# -- counts and label coverage (model level) ------------------------------------------------------
EVENTS = "events"
LABELS = "labels"
LATE_EVENTS = "late_events"
LABEL_MISSING = "label_missing"
LABEL_COVERAGE = "label_coverage"
EXPIRED_EVENTS = "expired_events"
"""Predictions whose partial reached stage 2 after the window's retention (source ``expired|...``)."""
EXPIRED_LABELS = "expired_labels"

# -- performance (model level) ---------------------------------------------------------------------
ACCURACY = "accuracy"
LOG_LOSS = "log_loss"
ROC_AUC = "roc_auc"
PRECISION = "precision"
RECALL = "recall"
CLASSIFICATION_METRICS = (ACCURACY, PRECISION, RECALL, "f1", LOG_LOSS, ROC_AUC)
PROPORTION_METRICS = (ACCURACY, PRECISION, RECALL)
"""Single proportions, tested champion against challenger (docs/versions.md): accuracy of ``details.n``
labelled events; binary precision and recall of ``details.denominator`` predicted / actual positives."""
MAE = "mae"
RMSE = "rmse"
MAPE = "mape"
R2 = "r2"
REGRESSION_METRICS = (MAE, RMSE, MAPE, R2)

# -- performance estimated before labels (model level) ---------------------------------------------
ESTIMATED_METRICS = (ACCURACY, "precision", "recall", "f1", ROC_AUC)
"""The classification metrics stage 2 also estimates from calibrated scores, before labels exist
(``detectors.estimation.ESTIMATED_METRICS``)."""
ESTIMATED_PREFIX = "estimated_"


def estimated(metric: str) -> str:
    """The estimate of a realized ``metric`` (one of ``ESTIMATED_METRICS``)."""
    return f"{ESTIMATED_PREFIX}{metric}"


def estimated_lower(metric: str) -> str:
    """The lower end of the estimate's 95 % sampling band."""
    return f"{estimated(metric)}_lower"


def estimated_upper(metric: str) -> str:
    """The upper end of the estimate's 95 % sampling band."""
    return f"{estimated(metric)}_upper"


def estimation_error(metric: str) -> str:
    """|estimated - realized| of a window, once its labels arrived."""
    return f"estimation_error_{metric}"


ESTIMATES = tuple(map(estimated, ESTIMATED_METRICS))
ESTIMATE_LOWER = tuple(map(estimated_lower, ESTIMATED_METRICS))
ESTIMATE_UPPER = tuple(map(estimated_upper, ESTIMATED_METRICS))
ESTIMATION_ERRORS = tuple(map(estimation_error, ESTIMATED_METRICS))
ESTIMATION_METRICS = (*ESTIMATES, *ESTIMATE_LOWER, *ESTIMATE_UPPER, *ESTIMATION_ERRORS)
"""Every name of the estimation family: estimate, band ends and estimation error per metric."""

# -- data fidelity ---------------------------------------------------------------------------------
DURATION_STATS = ("mean", "p50", "p95", "p99", "max")
"""The statistics of a duration histogram, in the order they are published."""
LATENESS_METRICS = tuple(f"lateness_{stat}_ms" for stat in DURATION_STATS)
"""Ingest time - event time, in milliseconds (model level)."""
LABEL_DELAY_METRICS = tuple(f"label_delay_{stat}_ms" for stat in DURATION_STATS)
"""Label time - prediction time, in milliseconds (model level)."""
DUPLICATE_IDS = "duplicate_ids"
DUPLICATE_RATE = "duplicate_rate"
REQUIRED_MISSING_EVENT_RATE = "required_missing_event_rate"
UNKNOWN_FEATURE_RATE = "unknown_feature_rate"
"""Model level: events carrying a feature not in the spec; per feature: events carrying this one."""
MISSING_RATE = "missing_rate"
TYPE_VIOLATION_RATE = "type_violation_rate"
RANGE_VIOLATION_RATE = "range_violation_rate"
UNSEEN_CATEGORY_RATE = "unseen_category_rate"
FEATURE_FIDELITY_METRICS = (
    MISSING_RATE,
    TYPE_VIOLATION_RATE,
    RANGE_VIOLATION_RATE,
    UNSEEN_CATEGORY_RATE,
    UNKNOWN_FEATURE_RATE,
)
"""The fidelity rates published per feature."""

# -- drift -----------------------------------------------------------------------------------------
DRIFT_METRICS = (
    "psi",
    "kl_divergence",
    "jensen_shannon",
    "hellinger",
    "ks",
    "cramer_von_mises",
    "wasserstein",
    "chi_square",
    "z_proportion",
)
"""Per-feature drift scores, one name per method: the names of ``detectors.drift.methods()``."""
DRIFTED = "drifted"
"""Per feature: 1 when the noise-controlled verdict is drift, else 0."""
DRIFT_SHARE = "drift_share"
"""Model level: the measured share of compared features that drifted (not a threshold)."""
DATASET_DRIFTED = "dataset_drifted"
DRIFTED_IMPORTANT_FEATURES = "drifted_important_features"

# -- change detection ------------------------------------------------------------------------------
CHANGE_DETECTED = "change_detected"

# -- fairness (binary classifiers with a ``fairness`` spec; docs/fairness.md) ------------------------
# Per group: ``feature = "<attribute>=<group>"``; per attribute (the gaps): ``feature = "<attribute>"``
# (an attribute is a feature name or ``tag:<name>``). ``segment`` keeps its meaning.
FAIRNESS_GROUP_SIZE = "fairness_group_size"
"""Per group: predictions of the group in the window; details ``too_few`` and the labelled counts."""
FAIRNESS_SELECTION_RATE = "fairness_selection_rate"
FAIRNESS_TPR = "fairness_tpr"
FAIRNESS_FPR = "fairness_fpr"
FAIRNESS_GROUP_METRICS = (FAIRNESS_GROUP_SIZE, FAIRNESS_SELECTION_RATE, FAIRNESS_TPR, FAIRNESS_FPR)
FAIRNESS_GROUPS_TOO_FEW = "fairness_groups_too_few"
"""Per attribute: how many groups had fewer than ``min_group_size`` predictions (left out of the gaps)."""
DEMOGRAPHIC_PARITY_DIFFERENCE = "demographic_parity_difference"
DEMOGRAPHIC_PARITY_RATIO = "demographic_parity_ratio"
EQUAL_OPPORTUNITY_DIFFERENCE = "equal_opportunity_difference"
EQUALIZED_ODDS_DIFFERENCE = "equalized_odds_difference"
FAIRNESS_GAPS = (
    DEMOGRAPHIC_PARITY_DIFFERENCE,
    DEMOGRAPHIC_PARITY_RATIO,
    EQUAL_OPPORTUNITY_DIFFERENCE,
    EQUALIZED_ODDS_DIFFERENCE,
)
"""Per attribute: the gaps between the groups large enough (``detectors.fairness``)."""
FAIRNESS_METRICS = (*FAIRNESS_GROUP_METRICS, FAIRNESS_GROUPS_TOO_FEW, *FAIRNESS_GAPS)


def fairness_group(attribute: str, group: str) -> str:
    """The ``feature`` of a per-group fairness point.

    >>> fairness_group("tag:region", "eu")
    'tag:region=eu'
    """
    return f"{attribute}={group}"


# -- versions of one model compared (docs/versions.md) ---------------------------------------------
# Published under the later version of a pair (``detectors.versions.version_order``) with
# ``feature = "versus=<the other version>"``, segment ``''``.
VERSION_PREDICTION_DRIFT = "version_prediction_drift"
"""p-value of the test that both versions' predictions have one distribution (chi-square or KS)."""
VERSION_AGREEMENT = "version_agreement"
"""Share of sampled shared requests (same ``request_id`` tag) on which both versions predict the same."""
VERSION_METRICS = (VERSION_PREDICTION_DRIFT, VERSION_AGREEMENT)
VERSUS_PREFIX = "versus="


def versus(version: str) -> str:
    """The ``feature`` of a version-pair point published under the other version of the pair.

    >>> versus("1")
    'versus=1'
    """
    return f"{VERSUS_PREFIX}{version}"


MODEL_METRICS = frozenset(
    {
        EVENTS,
        LABELS,
        LATE_EVENTS,
        LABEL_MISSING,
        LABEL_COVERAGE,
        EXPIRED_EVENTS,
        EXPIRED_LABELS,
        *CLASSIFICATION_METRICS,
        *REGRESSION_METRICS,
        *ESTIMATION_METRICS,
        *LATENESS_METRICS,
        *LABEL_DELAY_METRICS,
        DUPLICATE_IDS,
        DUPLICATE_RATE,
        REQUIRED_MISSING_EVENT_RATE,
        UNKNOWN_FEATURE_RATE,
        DRIFT_SHARE,
        DATASET_DRIFTED,
        DRIFTED_IMPORTANT_FEATURES,
        CHANGE_DETECTED,
    }
)
"""Names published with ``feature = ""``."""
FEATURE_METRICS = frozenset(
    {*FEATURE_FIDELITY_METRICS, *DRIFT_METRICS, DRIFTED, CHANGE_DETECTED, *FAIRNESS_METRICS, *VERSION_METRICS}
)
"""Names published per feature (drift also for the model output, ``__prediction__``), and fairness
per attribute or group (``feature`` = ``<attribute>`` or ``<attribute>=<group>``)."""


def is_estimate(name: str) -> bool:
    """Whether a metric is an estimate (or its band), not a value measured on labels.

    >>> is_estimate("estimated_accuracy"), is_estimate("estimated_f1_lower"), is_estimate("accuracy")
    (True, True, False)
    """
    return name.startswith(ESTIMATED_PREFIX) and name in MODEL_METRICS


def is_published(name: str) -> bool:
    """Whether modelmon publishes a metric of this name (at model level or per feature)."""
    return name in MODEL_METRICS or name in FEATURE_METRICS


LOWER_IS_BETTER = frozenset({LOG_LOSS, MAE, RMSE, MAPE})
"""Performance metrics where a larger value is worse (errors); the others are better when larger."""
