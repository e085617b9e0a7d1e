"""The contract of the ``reference-profiles`` topic that every layer shares.

A reference is published as one record per feature (:class:`detectors.profiles.records.ReferenceRecord`),
keyed by :func:`record_key`; the model output is profiled like a feature named :data:`PREDICTION_FEATURE`.
Building profiles from files lives in :mod:`detectors.profiles.files`.
"""

from __future__ import annotations

PREDICTION_FEATURE = "__prediction__"
"""Name of the model output in a reference profile (next to the input features)."""

CALIBRATION_RECORD = "__calibration__"
"""The ``feature`` of the record that carries a reference's score calibration (kind ``calibration``).

It is listed in the publication's ``features`` like a feature, so a reader assembles it with the
rest, but it is not a feature: it becomes ``ReferenceProfile.calibration``, never a drift input.
"""


class InvalidReferenceMessage(ValueError):
    """A message on the reference topic (or a stored row) that is not a valid reference record."""


def record_key(model_id: str, model_version: str, feature: str) -> str:
    """The Kafka key (and compaction key) of one feature's record: ``model_id|model_version|feature``.

    >>> record_key("fraud-detector", "3", "amount")
    'fraud-detector|3|amount'
    """
    return f"{model_id}|{model_version}|{feature}"
