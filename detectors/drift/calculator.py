"""``compute``: run one registered drift method on one feature and give its verdict."""

from __future__ import annotations

from detectors.drift.inputs import DriftInput, binned_counts, numerical_samples, resolve_kind
from detectors.drift.registry import DriftResult, check_threshold, get_method, methods_for


def compute(
    method: str,
    reference: DriftInput,
    current: DriftInput,
    *,
    kind: str | None = None,
    threshold: float | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` by the method registered as ``method``.

    Each side is raw values (``None``, NaN and ±inf are left out), a feature of a
    :class:`~detectors.profiles.ReferenceProfile` or a window aggregate. ``kind`` defaults to the
    summaries' kind, else ``"numerical"``. ``threshold`` defaults to the method's; a p-value test
    drifts when ``p_value < threshold``, a distance when ``score >= threshold``. This is the verdict
    of one test alone: over many features use :func:`detectors.drift.detect_many`, which controls
    false alarms.

    Raises ``ValueError`` for an unknown method or a kind the method does not apply to (naming
    the valid ones), and :class:`~detectors.drift.inputs.NoDataError` when a side is empty.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> reference, current = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    >>> result = compute("psi", reference, current)
    >>> round(result.score, 12), result.p_value, result.threshold, result.drifted
    (0.266060049948, None, 0.2, True)
    >>> result = compute("ks", reference, current)
    >>> round(result.score, 4), result.p_value < 1e-100, result.drifted
    (0.2178, True, True)
    >>> compute("chi_square", reference, current)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: method 'chi_square' does not apply to numerical features; for numerical: cramer_von_mises, ...
    """
    record = get_method(method)
    resolved = resolve_kind(kind, reference, current)
    if resolved not in record.kinds:
        raise ValueError(
            f"method {method!r} does not apply to {resolved} features; "
            f"for {resolved}: {', '.join(methods_for(resolved))}"
        )
    applied = (
        record.default_threshold
        if threshold is None
        else check_threshold(threshold, is_p_value=record.is_p_value)
    )
    if record.needs == "bins":
        reference_counts, current_counts = binned_counts(reference, current, resolved)
        score, p_value = record.statistic(reference_counts, current_counts)
    else:
        ref, cur = numerical_samples(reference, current)
        if record.sorted_input:
            score, p_value = record.statistic(ref.sorted_values(), cur.sorted_values(), ref.std)
        else:
            score, p_value = record.statistic(ref.values, cur.values, ref.std)
    return DriftResult(
        method=record.name,
        score=score,
        p_value=p_value,
        threshold=applied,
        drifted=record.is_drift(score, p_value, applied),
    )
