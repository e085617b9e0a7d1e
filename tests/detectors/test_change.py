"""Change detectors: detect a known step, resume identically from a snapshot, validate settings."""

from __future__ import annotations

import inspect
import json
import pickle
import random
from collections.abc import Callable

import pytest

from detectors.change import (
    ADWINDetector,
    ChangeDetector,
    KSWINDetector,
    PageHinkleyDetector,
    detectors,
    from_snapshot,
    make,
)

NAMES = sorted(detectors())
STEP = 150


def step_series(seed: int, before: float = 0.10, after: float = 0.30, noise: float = 0.02) -> list[float]:
    """An error rate per window that jumps at window ``STEP``."""
    rng = random.Random(seed)
    return [rng.gauss(before, noise) for _ in range(STEP)] + [rng.gauss(after, noise) for _ in range(150)]


def detections(detector: ChangeDetector, series: list[float]) -> list[int]:
    return [i for i, x in enumerate(series) if detector.update(x)]


# Windows after the step within which each detector fires (ADWIN is the slowest on small values).
DELAY = {"adwin": 100, "page_hinkley": 10, "kswin": 30}


@pytest.mark.parametrize("name", NAMES)
def test_detects_a_step_change_and_nothing_before_it(name: str) -> None:
    found = detections(make(name), step_series(1))
    assert found, f"{name} missed the step"
    assert STEP <= found[0] < STEP + DELAY[name]


def first_detection(name: str, series: list[float]) -> int:
    found = detections(make(name), series)
    return found[0] if found else -1


@pytest.mark.parametrize("name", NAMES)
def test_detection_and_false_alarm_rates_over_seeds(name: str) -> None:
    seeds = range(30)
    caught = sum(STEP <= first_detection(name, step_series(s)) < STEP + DELAY[name] for s in seeds)
    false_alarms = sum(first_detection(name, step_series(s, after=0.10)) >= 0 for s in seeds)
    assert caught >= 27 and false_alarms <= 2, (caught, false_alarms)


@pytest.mark.parametrize("name", NAMES)
def test_restored_detector_behaves_like_an_uninterrupted_one(name: str) -> None:
    series = step_series(4)
    uninterrupted = make(name)
    expected = [uninterrupted.update(x) for x in series]
    first = expected.index(True)
    for cut in (0, 1, 20, STEP, first, first + 1, first + 2, len(series)):
        before = make(name)
        answers = [before.update(x) for x in series[:cut]]
        snapshot = json.loads(json.dumps(before.snapshot(), allow_nan=False))
        resumed = from_snapshot(snapshot)
        assert resumed.drift_detected == before.drift_detected
        answers += [resumed.update(x) for x in series[cut:]]
        assert answers == expected, f"cut at {cut}"
        assert resumed.snapshot() == uninterrupted.snapshot()
        assert (resumed.n_seen, resumed.n_detections) == (uninterrupted.n_seen, uninterrupted.n_detections)


@pytest.mark.parametrize("name", NAMES)
def test_restore_in_place_and_pickle(name: str) -> None:
    series = step_series(5)
    source = make(name)
    for x in series[:200]:
        source.update(x)
    target = make(name)
    target.restore(source.snapshot())
    copy = pickle.loads(pickle.dumps(source))
    tail = series[200:]
    assert (
        [target.update(x) for x in tail] == [copy.update(x) for x in tail] == [source.update(x) for x in tail]
    )


def test_restore_refuses_another_detector() -> None:
    with pytest.raises(ValueError, match="'adwin' snapshot cannot restore a 'kswin' detector"):
        KSWINDetector().restore(ADWINDetector().snapshot())


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_values_are_skipped(name: str) -> None:
    series = step_series(6)
    plain, gappy = make(name), make(name)
    expected = [plain.update(x) for x in series]
    answers = []
    for x in series:
        assert gappy.update(float("nan")) is False
        assert gappy.update(float("inf")) is False
        answers.append(gappy.update(x))
    assert answers == expected and gappy.n_seen == len(series)


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_public_attributes_and_state_is_read_only(name: str) -> None:
    detector = make(name)
    arguments = [p for p in inspect.signature(type(detector).__init__).parameters if p != "self"]
    assert list(detector.get_params()) == arguments
    for argument in arguments:
        assert hasattr(detector, argument)
    with pytest.raises(AttributeError):
        detector.drift_detected = True  # type: ignore[misc]
    clone = detector.clone()
    assert clone.get_params() == detector.get_params() and clone is not detector
    assert make(name).snapshot() == make(name).snapshot()  # deterministic, seeded


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: PageHinkleyDetector(mode="sideways"), "mode must be one of up, down, both"),
        (lambda: PageHinkleyDetector(threshold=0), r"threshold must be a number in \(0.0, inf\)"),
        (lambda: PageHinkleyDetector(alpha=1.5), r"alpha must be a number in \(0.0, 1.0\]"),
        (lambda: PageHinkleyDetector(delta=-1), "delta must be a finite number >= 0"),
        (lambda: ADWINDetector(delta=2), r"delta must be a number in \(0.0, 1.0\)"),
        (lambda: ADWINDetector(clock=0), "clock must be an integer >= 1"),
        (lambda: KSWINDetector(window_size=50, stat_size=30), "window_size must be an integer >= 60"),
        (lambda: KSWINDetector(seed="x"), "seed must be an integer or None"),  # type: ignore[arg-type]
        (lambda: make("cusum"), "valid: adwin, kswin, page_hinkley"),
    ],
)
def test_bad_settings_raise_naming_the_allowed_values(factory: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        factory()


def test_registry() -> None:
    assert detectors() == {
        "adwin": ADWINDetector,
        "kswin": KSWINDetector,
        "page_hinkley": PageHinkleyDetector,
    }
    detector = make("kswin", window_size=40, stat_size=10, seed=3)
    assert isinstance(detector, KSWINDetector) and detector.window_size == 40
