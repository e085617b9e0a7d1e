"""The contract every registered drift method and every registered aggregate must keep (river style).

Modules of ``detectors`` are imported first, so an aggregate or method added anywhere in the
package is checked here; one without a fixture below fails ``test_every_*_has_a_fixture``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pickle
import pkgutil
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import detectors
from detectors.base import Aggregate, aggregate_from_dict, registered_aggregates, same_state

for _module in pkgutil.walk_packages(detectors.__path__, "detectors."):
    importlib.import_module(_module.name)

from detectors.drift import DriftResult, compute, methods  # noqa: E402
from detectors.profiles import CategoricalFeatureProfile, NumericalFeatureProfile  # noqa: E402

Batch = tuple[tuple[Any, ...], dict[str, Any]]
AggregateFixture = tuple[Callable[[], Aggregate], Callable[[np.random.Generator], Batch]]

# --- aggregate fixtures: how to build one and what a batch looks like ------------------------------

_EDGES = [-np.inf, -1.0, 0.0, 1.0, np.inf]


def _numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.normal(0, 1.5, n).astype(object)
    values[rng.random(n) < 0.1] = None
    return values


def _fidelity_batch(rng: np.random.Generator) -> Batch:
    from detectors.fidelity import FeatureSchema

    n = int(rng.integers(1, 30))
    columns = {
        "amount": _numbers(rng, n),
        "plan": rng.choice(np.array(["free", "pro", "x", None], dtype=object), n),
        "extra": rng.random(n),
    }
    schema = [
        FeatureSchema("amount", "numerical", required=True, min=-2.0, max=2.0),
        FeatureSchema("plan", "categorical", allowed=frozenset({"free", "pro"})),
    ]
    event_ts = rng.uniform(0, 1000, n)
    kwargs = {
        "event_ts": event_ts,
        "ingest_ts": event_ts + rng.exponential(30, n),
        "prediction_ids": np.array([f"p{i}" for i in rng.integers(0, 40, n)]),
    }
    return (columns, schema), kwargs


def _fidelity_factory() -> Aggregate:
    from detectors.fidelity import FidelityAggregate

    return FidelityAggregate()


def _shadow_batch(rng: np.random.Generator, n: int) -> tuple[Any, ...]:
    ids = [None if i < 2 else f"r{i}" for i in rng.integers(0, 40, n)]
    return ids, rng.choice(np.array(["a", "b", "c"]), n).tolist()


def _by_kind(name: str) -> Callable[..., Aggregate]:
    return registered_aggregates()[name]


AGGREGATE_FIXTURES: dict[str, AggregateFixture] = {
    "numeric": (
        lambda: _by_kind("numeric")(_EDGES, sample_size=16, seed=3),
        lambda rng: ((_numbers(rng, int(rng.integers(0, 60))),), {}),
    ),
    "bottom_k_sample": (
        lambda: _by_kind("bottom_k_sample")(size=8, seed=1),
        lambda rng: ((_numbers(rng, int(rng.integers(0, 60))),), {}),
    ),
    "categorical": (
        lambda: _by_kind("categorical")(["a", "b"], max_new_categories=3, seed=2),
        lambda rng: (
            (rng.choice(np.array([*"abcdefg", None], dtype=object), int(rng.integers(0, 60))),),
            {},
        ),
    ),
    "confusion_matrix": (
        lambda: _by_kind("confusion_matrix")(),
        lambda rng: (tuple(rng.integers(0, 3, (2, int(rng.integers(1, 40))))), {}),
    ),
    "score_histogram": (
        lambda: _by_kind("score_histogram")(bins=20),
        lambda rng: ((rng.integers(0, 2, (n := int(rng.integers(1, 40)))), rng.random(n)), {}),
    ),
    "regression": (
        lambda: _by_kind("regression")(),
        lambda rng: ((rng.normal(size=(n := int(rng.integers(1, 40)))), rng.normal(size=n)), {}),
    ),
    "duplicate_ids": (
        lambda: _by_kind("duplicate_ids")(capacity=16),
        lambda rng: ((np.array([f"id{i}" for i in rng.integers(0, 30, int(rng.integers(1, 40)))]),), {}),
    ),
    "fidelity": (_fidelity_factory, _fidelity_batch),
    "fairness": (
        lambda: _by_kind("fairness")(["gender"]),
        lambda rng: (
            (
                "gender",
                rng.choice(np.array(["F", "M", "X", None], dtype=object), n := int(rng.integers(1, 40))),
                rng.random(n) < 0.4,
                (rng.random(n) < 0.5) if rng.random() < 0.5 else None,  # predictions, or labelled pairs
            ),
            {},
        ),
    ),
    "shadow_sample": (  # request ids repeat across batches (and some are missing): ties by value
        lambda: _by_kind("shadow_sample")(k=8),
        lambda rng: (_shadow_batch(rng, int(rng.integers(1, 30))), {}),
    ),
}

KINDS = sorted(registered_aggregates())


def _fed(kind: str, seed: int, n_batches: int = 3) -> Aggregate:
    factory, batch = AGGREGATE_FIXTURES[kind]
    rng = np.random.default_rng(seed)
    aggregate = factory()
    for _ in range(n_batches):
        args, kwargs = batch(rng)
        aggregate.update_batch(*args, **kwargs)
    return aggregate


def _close(left: Aggregate, right: Aggregate) -> bool:
    return same_state(left.to_dict(), right.to_dict(), rel_tol=1e-9, abs_tol=1e-9)


def test_every_registered_aggregate_has_a_fixture() -> None:
    missing = sorted(set(registered_aggregates()) - set(AGGREGATE_FIXTURES))
    assert not missing, f"add a fixture to AGGREGATE_FIXTURES in {__file__} for: {', '.join(missing)}"


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_round_trips_through_dict_json_and_pickle(kind: str) -> None:
    aggregate = _fed(kind, seed=1)
    data = aggregate.to_dict()
    assert data["kind"] == kind
    assert aggregate_from_dict(data) == aggregate
    assert type(aggregate).from_dict(json.loads(json.dumps(data, allow_nan=False))) == aggregate
    assert pickle.loads(pickle.dumps(aggregate)) == aggregate


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_merge_is_commutative_and_associative(kind: str) -> None:
    x, y, z = (_fed(kind, seed=s) for s in (10, 11, 12))
    assert _close(x.merge(y), y.merge(x))
    assert _close(x.merge(y).merge(z), x.merge(y.merge(z)))


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_merge_leaves_its_inputs_alone_and_empty_is_neutral(kind: str) -> None:
    x, y = _fed(kind, seed=20), _fed(kind, seed=21)
    before_x, before_y = x.to_dict(), y.to_dict()
    merged = x.merge(y)
    assert merged is not x and merged is not y
    assert same_state(x.to_dict(), before_x) and same_state(y.to_dict(), before_y)
    empty = AGGREGATE_FIXTURES[kind][0]()
    assert _close(x.merge(empty), x) and _close(empty.merge(x), x)


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_is_deterministic(kind: str) -> None:
    assert _fed(kind, seed=5) == _fed(kind, seed=5)


@pytest.mark.parametrize("kind", KINDS)
def test_aggregate_defaults_are_not_mutable(kind: str) -> None:
    cls = registered_aggregates()[kind]
    for method in (cls.__init__, cls.update_batch):
        for parameter in inspect.signature(method).parameters.values():
            default = parameter.default
            assert not isinstance(default, list | dict | set | bytearray | np.ndarray), (
                f"{cls.__name__}.{method.__name__}({parameter.name}=...) has a mutable default"
            )


# --- drift-method fixtures: the kind to test on, and how to make a clear shift -------------------


def _numerical(rng: np.random.Generator, shift: float) -> np.ndarray:
    return rng.normal(shift, 1.0, 600)


def _categorical(rng: np.random.Generator, shift: float) -> np.ndarray:
    weights = np.array([0.5, 0.3, 0.2]) if not shift else np.array([0.2, 0.3, 0.5])
    return rng.choice(np.array(["a", "b", "c"]), 600, p=weights)


def _boolean(rng: np.random.Generator, shift: float) -> np.ndarray:
    return rng.random(600) < (0.3 + shift / 3)


DRIFT_FIXTURES: dict[str, tuple[str, Callable[[np.random.Generator, float], np.ndarray]]] = {
    "psi": ("numerical", _numerical),
    "kl_divergence": ("numerical", _numerical),
    "jensen_shannon": ("categorical", _categorical),
    "hellinger": ("boolean", _boolean),
    "ks": ("numerical", _numerical),
    "wasserstein": ("numerical", _numerical),
    "cramer_von_mises": ("numerical", _numerical),
    "chi_square": ("categorical", _categorical),
    "z_proportion": ("boolean", _boolean),
}

METHOD_NAMES = sorted(methods())


def test_every_registered_method_has_a_fixture() -> None:
    missing = sorted(set(methods()) - set(DRIFT_FIXTURES))
    assert not missing, f"add a fixture to DRIFT_FIXTURES in {__file__} for: {', '.join(missing)}"


def _pair(name: str, shift: float) -> tuple[str, np.ndarray, np.ndarray]:
    kind, make = DRIFT_FIXTURES[name]
    rng = np.random.default_rng(0)
    return kind, make(rng, 0.0), make(rng, shift)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_record_is_well_formed(name: str) -> None:
    record = methods()[name]
    assert record.name == name and re.fullmatch(r"[a-z][a-z0-9_]*", name) and record.display_name
    assert pickle.loads(pickle.dumps(record)) == record
    if record.is_p_value:
        assert record.effect_method in methods() and record.min_effect is not None
        assert record.kinds <= methods()[record.effect_method].kinds


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_flags_a_clear_shift_and_not_an_identical_copy(name: str) -> None:
    record = methods()[name]
    kind, reference, current = _pair(name, shift=1.0)
    result = compute(name, reference, current, kind=kind)
    assert isinstance(result, DriftResult) and result.method == name
    assert (result.p_value is None) == (not record.is_p_value)
    assert result.threshold == record.default_threshold
    assert result.drifted == record.is_drift(result.score, result.p_value, result.threshold)
    assert result.drifted, result
    same = compute(name, reference, reference.copy(), kind=kind)
    assert not same.drifted and (same.p_value is None or same.p_value > 0.5)
    assert compute(name, reference, current, kind=kind) == result  # deterministic
    assert pickle.loads(pickle.dumps(result)) == result


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_rejects_other_kinds_naming_the_valid_methods(name: str) -> None:
    record = methods()[name]
    for kind in {"numerical", "categorical", "boolean"} - record.kinds:
        with pytest.raises(ValueError, match=f"does not apply to {kind} features; for {kind}: "):
            compute(name, [1.0, 0.0], [0.0, 1.0], kind=kind)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_on_summaries_equals_the_raw_arrays(name: str) -> None:
    kind, reference, current = _pair(name, shift=0.3)
    if kind == "numerical":
        feature: NumericalFeatureProfile | CategoricalFeatureProfile = NumericalFeatureProfile.from_values(
            reference, sample_size=reference.size
        )
        window = feature.window_aggregate(sample_size=current.size)
    else:
        feature = CategoricalFeatureProfile.from_values(reference, kind=kind)  # type: ignore[arg-type]
        window = feature.window_aggregate()
    for batch in np.array_split(current, 3):
        window.update_batch(batch)
    on_summaries = compute(name, feature, window)
    raw = compute(name, reference, current, kind=kind)
    assert on_summaries.score == pytest.approx(raw.score, abs=1e-12)
    assert on_summaries.p_value == pytest.approx(raw.p_value, abs=1e-12)
    if methods()[name].needs == "bins":
        assert on_summaries == raw
