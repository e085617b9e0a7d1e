"""Stage 1's side of shadow agreement: each version's sample of predictions by ``request_id`` tag.

A prediction that carries ``tags["request_id"]`` is folded into its window bundle's
:class:`detectors.shadow.ShadowSample` (the ``shadow_sample_size`` smallest request-id hashes of the
window with their prediction: the canonical class of a classifier, the number of a regressor).
Stage 2 compares two versions' samples of the same window (:mod:`streams.version_pairs`).
"""

from __future__ import annotations

from detectors.labels import canonical_labels
from detectors.shadow import ShadowSample
from modelmon.spec import ModelSpec, Task
from streams.columns import PredictionColumns, label_array

REQUEST_ID_TAG = "request_id"

__all__ = ["REQUEST_ID_TAG", "ShadowSample", "fold_shadow", "shadow_sample"]


def shadow_sample(spec: ModelSpec) -> ShadowSample | None:
    """An empty sample of ``spec.shadow_sample_size`` requests; None when it is 0 (off)."""
    if spec.shadow_sample_size <= 0:
        return None
    return ShadowSample(spec.shadow_sample_size, numeric=spec.task is Task.REGRESSION)


def fold_shadow(agg: ShadowSample | None, batch: PredictionColumns) -> None:
    """Fold the batch's predictions that carry a request id."""
    if agg is None or batch.tags is None or len(batch) == 0:
        return
    ids = [tags.get(REQUEST_ID_TAG) if tags else None for tags in batch.tags]
    rows = [i for i, request in enumerate(ids) if request]
    if not rows:
        return
    predictions = [batch.predictions[i] for i in rows]
    if agg.numeric:
        agg.update_batch([ids[i] for i in rows], predictions)
        return
    text, valid = canonical_labels(label_array(predictions))
    values = [str(t) if ok else None for t, ok in zip(text.tolist(), valid.tolist(), strict=True)]
    agg.update_batch([ids[i] for i in rows], values)
