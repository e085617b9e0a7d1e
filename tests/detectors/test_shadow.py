"""Coordinated bottom-k samples by request id: batch-independent merge, exact and sampled agreement."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.shadow import ShadowSample, agreement
from detectors.versions import wilson


def _sample(ids: list[str], values: list[str], k: int, parts: int, rng: np.random.Generator) -> ShadowSample:
    """The sample of (ids, values) built from ``parts`` random batches merged in a random order."""
    order = rng.permutation(len(ids))
    cuts = np.sort(rng.choice(np.arange(1, len(ids)), parts - 1, replace=False)) if parts > 1 else []
    pieces = []
    for chunk in np.split(order, cuts):
        piece = ShadowSample(k)
        piece.update_batch([ids[i] for i in chunk], [values[i] for i in chunk])
        pieces.append(piece)
    rng.shuffle(pieces)  # type: ignore[arg-type]
    out = ShadowSample(k)
    for piece in pieces:
        out = out.merge(piece) if rng.random() < 0.5 else piece.merge(out)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_merge_of_any_batching_is_the_sample_of_the_concatenation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 400))
    ids = [f"req-{i}" for i in rng.integers(0, 300, n)]  # repeats: one request logged twice
    values = rng.choice(np.array(["a", "b", "c"]), n).tolist()
    whole = ShadowSample(64)
    whole.update_batch(ids, values)
    for parts in (2, 3, 7):
        merged = _sample(ids, values, 64, parts, rng)
        assert merged.to_dict() == whole.to_dict()
        assert ShadowSample.from_dict(merged.to_dict()).to_dict() == whole.to_dict()
    assert len(whole) == min(64, len(set(ids)))


def test_agreement_on_ten_requests_seven_agree_is_exactly_0_7() -> None:
    ids = [f"r{i}" for i in range(10)]
    a, b = ShadowSample(512), ShadowSample(512)
    a.update_batch(ids, ["yes"] * 10)
    b.update_batch(ids, ["yes"] * 7 + ["no"] * 3)
    result = agreement(a, b)
    assert (result.matched, result.agree, result.exact, result.share) == (10, 7, True, 0.7)
    extra = ShadowSample(512)  # a request only one version served is not compared
    extra.update_batch([*ids, "only-b"], ["yes"] * 7 + ["no"] * 3 + ["yes"])
    assert agreement(a, extra).matched == 10


def test_regression_agreement_compares_within_float_noise() -> None:
    a, b = ShadowSample(8, numeric=True), ShadowSample(8, numeric=True)
    a.update_batch(["r1", "r2", "r3"], [1.0, 2.0, 3.0])
    b.update_batch(["r1", "r2", "r3"], [1.0 + 1e-12, 2.5, 3.0])
    assert (agreement(a, b).matched, agreement(a, b).agree) == (3, 2)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_agreement_estimates_the_share_within_its_interval(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k, true_share = 20_000, 512, 0.83
    ids = [f"{seed}-{i}" for i in range(n)]
    a_values = rng.choice(np.array(["x", "y"]), n)
    same = rng.random(n) < true_share
    b_values = np.where(same, a_values, np.where(a_values == "x", "y", "x"))
    only_a = rng.random(n) < 0.1  # some requests only one version served
    a, b = ShadowSample(k), ShadowSample(k)
    a.update_batch(ids, a_values.tolist())
    b.update_batch([i for i, o in zip(ids, only_a, strict=True) if not o], b_values[~only_a].tolist())
    result = agreement(a, b)
    assert not result.exact and 0.85 * k < result.matched <= k
    realized = float(same[~only_a].mean())
    lower, upper = wilson(result.agree, result.matched)
    assert lower <= realized <= upper, (result, realized)
