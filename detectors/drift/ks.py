"""The two-sample Kolmogorov-Smirnov test on numerical values (or reservoir samples)."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt
from scipy import stats

from detectors.drift.registry import NUMERICAL_ONLY, DriftMethod, register

_MAX_EXACT = 10_000
"""``ks_2samp(method="auto")`` computes the exact p-value when neither side has more values than this."""

_CACHE_SIZE = 4096
_exact: OrderedDict[tuple[int, int, int], tuple[float, float]] = OrderedDict()
"""(n1, n2, h) -> ``ks_2samp``'s (statistic, p-value), least recently used first."""
_exact_lock = threading.Lock()


def ks_test(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``scipy.stats.ks_2samp``: (largest gap between the two empirical CDFs, p-value).

    >>> ks_test([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 5.0, 6.0])
    (0.5, 0.7714285714285716)
    """
    if isinstance(reference, np.ndarray | list | tuple) and isinstance(current, np.ndarray | list | tuple):
        ref, cur = np.asarray(reference), np.asarray(current)
        if _plain_vector(reference, ref) and _plain_vector(current, cur):
            return ks_test_sorted(np.sort(ref), np.sort(cur))
    return _scipy_ks(reference, current)


def ks_test_sorted(
    reference: npt.NDArray[np.float64], current: npt.NDArray[np.float64]
) -> tuple[float, float]:
    """:func:`ks_test` of two float64 vectors that are already sorted ascending.

    This is ``ks_2samp``'s two-sided ``method="auto"`` path: its statistic formula written out, and
    its exact p-value, which depends only on the sample sizes and the statistic, taken from
    ``ks_2samp`` itself (public API) the first time a (n1, n2, statistic) comes up. The last 4,096
    exact p-values are kept by (n1, n2, statistic), so a repeated statistic skips the sorts,
    ``ks_2samp``'s argument handling and the exact computation: ``clear_cache`` forgets them. The
    result is the same as ``ks_2samp``'s to the last bit (the test suite checks it). Everything else
    (NaN, more than 10,000 values on a side, an exact computation that fails and falls back to the
    asymptotic one) is left to ``ks_2samp`` on every call.

    >>> ks_test_sorted(np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 4.0, 5.0, 6.0]))
    (0.5, 0.7714285714285716)
    """
    n1, n2 = reference.size, current.size
    if min(n1, n2) == 0 or max(n1, n2) > _MAX_EXACT or np.isnan(reference[-1]) or np.isnan(current[-1]):
        return _scipy_ks(reference, current)
    # ks_2samp evaluates cdf1 - cdf2 at every value v of both sides, with cdf1 = (reference values
    # <= v) / n1 and cdf2 the same on current: a binary search per value. Merging the two sorted
    # sides gives the same counts (read at the last of equal values, for "<= v") without one.
    data_all = np.concatenate([reference, current])
    order = np.argsort(data_all, kind="stable")  # two sorted runs: one linear merge
    below1 = np.cumsum(order < n1)
    below2 = np.arange(1, n1 + n2 + 1) - below1
    merged = data_all[order]
    last = np.append(merged[1:] != merged[:-1], True)
    cddiffs = below1[last] / n1 - below2[last] / n2
    min_s = np.clip(-cddiffs[np.argmin(cddiffs)], 0, 1)
    max_s = cddiffs[np.argmax(cddiffs)]
    d = min_s if min_s > max_s else max_s
    # ks_2samp's exact p-value depends only on the sizes and h = round(d * lcm(n1, n2)), an integer
    # (its statistic becomes h / lcm); with fixed sample sizes the same few hundred h come back
    # window after window, so each is computed once (rounding error in d * lcm << 0.5).
    lcm = (n1 // math.gcd(n1, n2)) * n2
    key = (n1, n2, int(np.round(d * lcm)))
    with _exact_lock:
        known = _exact.get(key)
        if known is not None:
            _exact.move_to_end(key)
            return known
    result = _scipy_ks(reference, current)
    if _exact_succeeded(n1, n2, *result):
        with _exact_lock:
            _exact[key] = result
            if len(_exact) > _CACHE_SIZE:
                _exact.popitem(last=False)
    return result


def _exact_succeeded(n1: int, n2: int, statistic: float, p_value: float) -> bool:
    """False when ``ks_2samp``'s p-value is the asymptotic one (it warns when the exact one fails).

    A p-value that happens to equal the asymptotic one is then merely not kept.
    """
    m, n = max(n1, n2), min(n1, n2)
    asymptotic = stats.kstwo.sf(statistic, np.round(m * n / (m + n)))
    return bool(p_value != np.clip(asymptotic, 0, 1))


def clear_cache() -> None:
    """Forget the exact p-values computed so far (benchmarks call it to time cold runs)."""
    with _exact_lock:
        _exact.clear()


def _plain_vector(given: object, array: np.ndarray) -> bool:
    return array.ndim == 1 and array.dtype == np.float64 and not isinstance(given, np.ma.MaskedArray)


def _scipy_ks(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def _statistic(reference: npt.ArrayLike, current: npt.ArrayLike, reference_std: float) -> tuple[float, float]:
    # Registered with sorted_input=True: both sides arrive sorted (a profile's sorted sample is kept).
    return ks_test_sorted(np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64))


KS = register(
    DriftMethod(
        name="ks",
        display_name="Kolmogorov-Smirnov test",
        kinds=NUMERICAL_ONLY,
        default_threshold=0.05,
        is_p_value=True,
        needs="samples",
        statistic=_statistic,
        effect_method="wasserstein",
        min_effect=0.1,
        sorted_input=True,
    )
)
