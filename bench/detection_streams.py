"""Streams with one known change point for the detection bench, built from river's synthetic generators.

Every case joins two generators with ``river.datasets.synth.ConceptDriftStream``: events come from
the first one before ``position`` and from the second one after it (a sigmoid of ``width`` events
around ``position``). Each case says which of the two things a monitor can watch changes at the
switch: the **inputs** (the feature distribution: covariate drift, what drift tests see) and the
**error** of a fixed model (concept drift, what an error-rate detector sees). A signal whose target
does not change on a case is a control for it: every alarm it raises there is a false alarm.

The model is frozen at the start, as a deployed model is: the first generator's own labelling
rule where river exposes it (SEA, Agrawal) or a nearest-class-mean classifier fitted on the
reference events (RandomRBF). Agrawal has no label noise of its own, so its labels are flipped
with probability ``AGRAWAL_LABEL_NOISE`` (seeded), giving the model a non-zero error to start from,
as SEA's ``noise`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from river.datasets import synth

AGRAWAL_LABEL_NOISE = 0.05
SEA_NOISE = 0.1
AGRAWAL_FEATURES = {
    "salary": "numerical",
    "commission": "numerical",
    "age": "numerical",
    "elevel": "categorical",
    "car": "categorical",
    "zipcode": "categorical",
    "hvalue": "numerical",
    "hyears": "numerical",
    "loan": "numerical",
}
SEA_FEATURES = {f"x{i}": "numerical" for i in range(3)}
RBF_FEATURES = {f"x{i}": "numerical" for i in range(10)}
MAX_EXPONENT = 700.0  # math.exp overflows past ~709: ConceptDriftStream computes exp(4 * position / width)


@dataclass(frozen=True)
class Stream:
    """One generated stream: features per event, the model's prediction and the true label."""

    features: list[dict[str, float | int]]
    predictions: np.ndarray  # int 0/1
    labels: np.ndarray  # int 0/1

    @property
    def errors(self) -> np.ndarray:
        """The model's error indicator per event (1 = wrong), as float."""
        return (self.predictions != self.labels).astype(float)

    def column(self, name: str) -> np.ndarray:
        return np.fromiter((x[name] for x in self.features), dtype=float, count=len(self.features))


@dataclass(frozen=True)
class Case:
    """A stream definition: two generators joined at the change point, a fixed model, what changes."""

    name: str
    description: str
    features: dict[str, str]  # name -> "numerical" | "categorical"
    inputs_change: bool
    error_change: bool
    generators: Callable[[int], tuple[synth.base.SyntheticDataset, synth.base.SyntheticDataset]]
    kind: str  # "sea" | "agrawal" | "rbf": how features are named and the model is built


def _agrawal_rule_0(age: float) -> int:
    # Agrawal's classification function 0, which the frozen model keeps after the switch.
    return int(age < 40 or age >= 60)


CASES: tuple[Case, ...] = (
    Case(
        "rbf-switch",
        "RandomRBF centroids of seed_model s → s+1: every input's distribution changes (and the concept)",
        RBF_FEATURES,
        inputs_change=True,
        error_change=True,
        generators=lambda s: (
            synth.RandomRBF(seed_model=s, seed_sample=s),
            synth.RandomRBF(seed_model=s + 1, seed_sample=s + 1),
        ),
        kind="rbf",
    ),
    Case(
        "agrawal-perturb",
        "Agrawal f0, perturbation 0 → 0.2: hvalue changes much, age/hyears/salary a little; the error rises",
        AGRAWAL_FEATURES,
        inputs_change=True,
        error_change=True,
        generators=lambda s: (synth.Agrawal(0, seed=s), synth.Agrawal(0, seed=s + 1, perturbation=0.2)),
        kind="agrawal",
    ),
    Case(
        "agrawal-balance",
        "Agrawal f0, balance_classes False → True: age shifts (prior shift); the error does not change",
        AGRAWAL_FEATURES,
        inputs_change=True,
        error_change=False,
        generators=lambda s: (synth.Agrawal(0, seed=s), synth.Agrawal(0, seed=s + 1, balance_classes=True)),
        kind="agrawal",
    ),
    Case(
        "sea-concept",
        "SEA variant 0 → 3 (threshold 8 → 9.5), noise 0.1: inputs unchanged, error 10% → ~20%",
        SEA_FEATURES,
        inputs_change=False,
        error_change=True,
        generators=lambda s: (
            synth.SEA(variant=0, noise=SEA_NOISE, seed=s),
            synth.SEA(variant=3, noise=SEA_NOISE, seed=s + 1),
        ),
        kind="sea",
    ),
    Case(
        "agrawal-concept",
        "Agrawal f0 → f2 (ConceptDriftStream's default pair): inputs unchanged, the error rises",
        AGRAWAL_FEATURES,
        inputs_change=False,
        error_change=True,
        generators=lambda s: (synth.Agrawal(0, seed=s), synth.Agrawal(2, seed=s + 1)),
        kind="agrawal",
    ),
    Case(
        "sea-none",
        "control: SEA variant 0 → variant 0 (another seed): nothing changes",
        SEA_FEATURES,
        inputs_change=False,
        error_change=False,
        generators=lambda s: (
            synth.SEA(variant=0, noise=SEA_NOISE, seed=s),
            synth.SEA(variant=0, noise=SEA_NOISE, seed=s + 1),
        ),
        kind="sea",
    ),
    Case(
        "agrawal-none",
        "control: Agrawal f0 → f0 (another seed): nothing changes",
        AGRAWAL_FEATURES,
        inputs_change=False,
        error_change=False,
        generators=lambda s: (synth.Agrawal(0, seed=s), synth.Agrawal(0, seed=s + 1)),
        kind="agrawal",
    ),
)
CASE_NAMES = tuple(case.name for case in CASES)


def default_width(position: int) -> int:
    """The sharpest transition ConceptDriftStream can compute for this position (see ``check_width``)."""
    return max(1, math.ceil(4.0 * position / MAX_EXPONENT))


def check_width(position: int, width: int) -> None:
    """ConceptDriftStream evaluates exp(4 (position - t) / width) at t = 1: it overflows when too sharp."""
    if width < 1 or 4.0 * (position - 1) / width > MAX_EXPONENT:
        raise ValueError(
            f"width {width} is too sharp for position {position}: river's ConceptDriftStream overflows "
            f"math.exp; use a width of at least {default_width(position)}"
        )


def generate(case: Case, seed: int, *, length: int, position: int, width: int, reference_n: int) -> Stream:
    """``length`` events of ``case`` with the switch centred on event ``position`` (1-based, as river)."""
    check_width(position, width)
    # Seeds differ per case too, so the cases' pre-change events (and false alarms) are independent.
    base = 1000 * seed + 10 * CASE_NAMES.index(case.name)
    before, after = case.generators(base + 1)
    joined = synth.ConceptDriftStream(before, after, position=position, width=width, seed=base + 3)
    features: list[dict[str, float | int]] = []
    labels = np.empty(length, dtype=np.int64)
    for i, (x, y) in enumerate(joined.take(length)):
        features.append(x if case.kind == "agrawal" else {f"x{k}": v for k, v in x.items()})
        labels[i] = int(y)
    if case.kind == "agrawal":
        flips = np.random.default_rng(base + 4).random(length) < AGRAWAL_LABEL_NOISE
        labels = np.where(flips, 1 - labels, labels)
        predictions = np.array([_agrawal_rule_0(x["age"]) for x in features], dtype=np.int64)
    elif case.kind == "sea":
        predictions = np.array([int(x["x0"] + x["x1"] > 8) for x in features], dtype=np.int64)
    else:
        predictions = _nearest_class_mean(features, labels, reference_n, list(case.features))
    return Stream(features, predictions, labels)


def _nearest_class_mean(
    features: list[dict[str, float | int]], labels: np.ndarray, fit_n: int, names: list[str]
) -> np.ndarray:
    """Predictions of a nearest-class-mean classifier fitted on the first ``fit_n`` labelled events."""
    matrix = np.array([[x[name] for name in names] for x in features], dtype=float)
    classes = np.unique(labels[:fit_n])
    means = np.stack([matrix[:fit_n][labels[:fit_n] == c].mean(axis=0) for c in classes])
    distances = ((matrix[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    return classes[np.argmin(distances, axis=1)].astype(np.int64)
