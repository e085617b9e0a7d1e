"""What drift methods read from raw arrays, reference profiles and window aggregates, made uniform.

A side of a comparison can be raw values, a feature of a :class:`~detectors.profiles.ReferenceProfile`
or a window aggregate. Binned methods see counts on the same bins either way, so a profile against
an aggregate gives exactly the score of the raw arrays they summarise. Sample-based methods see the
raw present values, or the reservoir sample when a side is a profile or aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.bins import align_counts, category_counts, histogram, reference_edges
from detectors.features import FeatureValues, category_labels, numeric_values
from detectors.profiles import (
    CategoricalAggregate,
    CategoricalFeatureProfile,
    NumericAggregate,
    NumericalFeatureProfile,
)
from modelmon.kinds import FeatureKind, check_kind

Summary = NumericalFeatureProfile | CategoricalFeatureProfile | NumericAggregate | CategoricalAggregate
DriftInput = FeatureValues | Summary
"""One side of a comparison: raw values, a reference-profile feature or a window aggregate."""

_SUMMARIES = (NumericalFeatureProfile, CategoricalFeatureProfile, NumericAggregate, CategoricalAggregate)


class NoDataError(ValueError):
    """A side of a comparison has no present values, so there is nothing to compare."""


def summary_kind(data: DriftInput) -> FeatureKind | None:
    """The feature kind a profile or aggregate was built for; ``None`` for raw values."""
    if isinstance(data, NumericalFeatureProfile | NumericAggregate):
        return FeatureKind.NUMERICAL
    if isinstance(data, CategoricalFeatureProfile):
        return data.kind
    if isinstance(data, CategoricalAggregate):
        return data.feature_kind
    return None


def resolve_kind(kind: str | None, reference: DriftInput, current: DriftInput) -> FeatureKind:
    """The kind to compare as: the one given, else the summaries', else ``"numerical"``."""
    known = {k for k in (summary_kind(reference), summary_kind(current)) if k is not None}
    if kind is not None:
        checked = check_kind(kind)
        if known and known != {checked}:
            raise ValueError(f"kind {kind!r} does not match the {'/'.join(sorted(known))} summaries given")
        return checked
    if len(known) > 1:
        raise ValueError(f"the two sides summarise different kinds: {', '.join(sorted(known))}")
    return known.pop() if known else FeatureKind.NUMERICAL


@dataclass(frozen=True)
class NumericalSide:
    """A numerical side: present values (or a sample), the std of all of them, and bins if binned."""

    values: npt.NDArray[np.float64]
    std: float
    count: int
    edges: npt.NDArray[np.float64] | None = None
    bin_counts: npt.NDArray[np.int64] | None = None
    profile: NumericalFeatureProfile | None = None

    def sorted_values(self) -> npt.NDArray[np.float64]:
        """``values`` sorted ascending (kept by a reference profile, else sorted now)."""
        return np.sort(self.values) if self.profile is None else self.profile.sorted_sample

    def counts_on(self, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        """Counts on ``edges``; a binned side must have been binned on exactly these edges."""
        if self.edges is None:
            return histogram(self.values, edges)
        if self.edges is not edges and not np.array_equal(self.edges, edges):
            raise ValueError("the aggregate was binned on other edges than the reference's")
        assert self.bin_counts is not None
        return self.bin_counts


@dataclass(frozen=True)
class CategoricalSide:
    """A categorical side: sorted categories with counts, plus values folded into ``other``."""

    categories: npt.NDArray[np.str_]
    counts: npt.NDArray[np.int64]
    other: int = 0


def numerical_side(data: DriftInput) -> NumericalSide:
    """Normalise one side for numerical methods."""
    if isinstance(data, NumericalFeatureProfile):
        return NumericalSide(data.sample, data.std, data.count, data.edges, data.bin_counts, data)
    if isinstance(data, NumericAggregate):
        return NumericalSide(data.sample, data.std, data.count, data.edges, data.bin_counts)
    if isinstance(data, _SUMMARIES):
        raise ValueError(f"a {type(data).__name__} cannot be compared as a numerical feature")
    present, _ = numeric_values(data)
    std = float(np.std(present)) if present.size else float("nan")
    return NumericalSide(present, std, int(present.size))


def categorical_side(data: DriftInput, kind: FeatureKind) -> CategoricalSide:
    """Normalise one side for categorical (or boolean) methods."""
    if isinstance(data, CategoricalFeatureProfile):
        return CategoricalSide(data.categories, data.category_counts, data.other)
    if isinstance(data, CategoricalAggregate):
        names, counts = data.category_counts()
        return CategoricalSide(names, counts, data.other)
    if isinstance(data, _SUMMARIES):
        raise ValueError(f"a {type(data).__name__} cannot be compared as a {kind} feature")
    labels, _ = category_labels(data, kind)
    names, counts = category_counts(labels)
    return CategoricalSide(names, counts)


def _categorical_counts(
    reference: CategoricalSide, current: CategoricalSide
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    if reference.other == 0 and current.other == 0:
        union = np.union1d(reference.categories, current.categories)
        return (
            align_counts(union, reference.categories, reference.counts),
            align_counts(union, current.categories, current.counts),
        )
    # Some values were folded into "other": compare the reference's categories plus one bin for
    # everything else, on both sides.
    ref_counts = np.append(reference.counts, reference.other)
    index = np.zeros(current.categories.size, dtype=np.intp)
    known = np.zeros(current.categories.size, dtype=bool)
    if reference.categories.size:
        index = np.minimum(
            np.searchsorted(reference.categories, current.categories), reference.categories.size - 1
        )
        known = reference.categories[index] == current.categories
    cur_known = np.zeros(reference.categories.size, dtype=np.int64)
    cur_known[index[known]] = current.counts[known]
    cur_rest = int(current.counts[~known].sum()) + current.other
    return ref_counts, np.append(cur_known, cur_rest)


def binned_counts(
    reference: DriftInput, current: DriftInput, kind: FeatureKind
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Reference and current counts on the same bins, without bins empty on both sides.

    Numerical: the reference's decile bins. Categorical and boolean: the union of categories.
    Dropping bins empty on both sides changes none of PSI, KL, Jensen-Shannon and Hellinger, and
    keeps chi-square from counting categories that neither side has.
    """
    if kind == "numerical":
        ref = numerical_side(reference)
        cur = numerical_side(current)
        _require_data(ref.count, cur.count)
        edges = ref.edges if ref.edges is not None else reference_edges(ref.values)
        ref_counts, cur_counts = ref.counts_on(edges), cur.counts_on(edges)
    else:
        ref_cat = categorical_side(reference, kind)
        cur_cat = categorical_side(current, kind)
        ref_counts, cur_counts = _categorical_counts(ref_cat, cur_cat)
    _require_data(int(ref_counts.sum()), int(cur_counts.sum()))
    occupied = (ref_counts + cur_counts) > 0
    return ref_counts[occupied], cur_counts[occupied]


def numerical_samples(reference: DriftInput, current: DriftInput) -> tuple[NumericalSide, NumericalSide]:
    """Both sides for sample-based methods; each must hold at least one present value."""
    ref, cur = numerical_side(reference), numerical_side(current)
    _require_data(ref.values.size, cur.values.size)
    return ref, cur


def _require_data(n_reference: int, n_current: int) -> None:
    if n_reference == 0:
        raise NoDataError("the reference has no present values")
    if n_current == 0:
        raise NoDataError("the current data has no present values")


def is_sampled(data: DriftInput) -> bool:
    """Whether sample-based methods would see only part of this side's values."""
    if isinstance(data, NumericalFeatureProfile | NumericAggregate):
        return data.sample.size < data.count
    return False


def reference_size(data: DriftInput, kind: FeatureKind) -> tuple[int, int]:
    """(present values, distinct present values) of a reference side, for choosing a method.

    A window aggregate used as a reference knows its distinct categories, but for a numerical
    feature only those in its sample.
    """
    if isinstance(data, NumericalFeatureProfile | CategoricalFeatureProfile):
        return data.count, data.n_unique
    if isinstance(data, NumericAggregate):
        return data.count, int(np.unique(data.sample).size)
    if isinstance(data, CategoricalAggregate):
        _, counts = data.category_counts()
        return data.count, int(np.count_nonzero(counts)) + (1 if data.other else 0)
    if kind == "numerical":
        present, _ = numeric_values(data)
        return int(present.size), int(np.unique(present).size)
    labels, _ = category_labels(data, kind)
    return int(labels.size), int(np.unique(labels).size)
