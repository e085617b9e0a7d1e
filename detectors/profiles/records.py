"""A published reference as records: one per feature, the value of a ``reference-profiles`` message.

Workers (``streams/references.py``) and the sink (``sinks/references.py``) read them; the key and the
error type are the contract's (:mod:`modelmon.references`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from detectors.estimation import Calibration
from detectors.profiles import (
    CategoricalFeatureProfile,
    FeatureProfile,
    NumericalFeatureProfile,
    ReferenceProfile,
)
from modelmon.kinds import FeatureKind
from modelmon.references import CALIBRATION_RECORD, InvalidReferenceMessage, record_key

CALIBRATION_KIND: Literal["calibration"] = "calibration"
"""The ``kind`` of the record that carries the reference's score calibration (feature ``__calibration__``)."""


class ReferenceRecord(BaseModel):
    """One feature of one published reference: the value of a message on ``reference-profiles``.

    ``reference_id`` is shared by the records of one publication and ``features`` lists all of them,
    so a reader assembles the newest complete publication and ignores features it no longer has.
    A labelled reference adds one record of kind ``calibration`` (feature ``__calibration__``,
    the calibration's dict as ``profile``), listed in ``features`` like the others; it becomes the
    profile's ``calibration``, not a feature. Publications without it read as before.
    A feature's importance estimated on a labelled reference travels in its record's ``profile``
    dict as ``importance`` (absent in older records, which load as before).
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    model_id: str = Field(min_length=1)
    model_version: str = Field(min_length=1)
    feature: str = Field(min_length=1)
    kind: FeatureKind | Literal["calibration"]
    profile: dict[str, Any]
    created_at: datetime
    source: str = Field(min_length=1, description="'file:<name>', 'first_n', 'first_period', 'rolling'.")
    reference_id: str = Field(min_length=1)
    features: list[str] = Field(min_length=1)

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @property
    def key(self) -> str:
        return record_key(self.model_id, self.model_version, self.feature)

    @property
    def is_calibration(self) -> bool:
        return self.kind == CALIBRATION_KIND

    def feature_profile(self) -> FeatureProfile:
        """The profile of this feature (parsed once); raises :class:`InvalidReferenceMessage` if invalid."""
        parsed = self._parsed_profile
        if self.is_calibration:
            raise InvalidReferenceMessage(f"record {self.key!r} is the calibration, not a feature")
        return parsed  # type: ignore[return-value]

    def calibration(self) -> Calibration:
        """The calibration this record carries (kind ``calibration`` only)."""
        parsed = self._parsed_profile
        if not self.is_calibration:
            raise InvalidReferenceMessage(f"record {self.key!r} is a feature, not the calibration")
        return parsed  # type: ignore[return-value]

    @cached_property
    def _parsed_profile(self) -> FeatureProfile | Calibration:
        # A cached_property is not a field: not serialised, and not part of ==.
        try:
            if self.is_calibration != (self.feature == CALIBRATION_RECORD):
                raise ValueError(f"kind {self.kind!r} for feature {self.feature!r}")
            if self.is_calibration:
                return Calibration.from_dict(self.profile)
            if self.kind != self.profile.get("kind"):
                raise ValueError(f"kind {self.kind!r} but the profile says {self.profile.get('kind')!r}")
            if self.kind == "numerical":
                return NumericalFeatureProfile.from_dict(self.profile)
            return CategoricalFeatureProfile.from_dict(self.profile)
        except (KeyError, TypeError, ValueError) as error:
            message = f"feature {self.feature!r}: invalid profile: {error!r}"
            raise InvalidReferenceMessage(message) from None

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json")
        data["created_at"] = self.created_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json.dumps(data, allow_nan=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, value: bytes | str) -> ReferenceRecord:
        try:
            record = cls.model_validate_json(value)
        except ValidationError as error:
            raise InvalidReferenceMessage(str(error)) from None
        record._parsed_profile  # noqa: B018 -- parse now: an invalid profile is an invalid message
        return record


def reference_records(
    model_id: str,
    model_version: str,
    profile: ReferenceProfile,
    source: str,
    *,
    created_at: datetime | None = None,
) -> list[ReferenceRecord]:
    """One record per feature of ``profile``, sharing a new ``reference_id`` and ``created_at``."""
    if not profile:
        raise ValueError("a reference profile needs at least one feature")
    when = created_at or datetime.now(UTC)
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)  # the millisecond resolution stored
    reference_id = uuid.uuid4().hex
    names = list(profile)
    if CALIBRATION_RECORD in names:
        raise ValueError(f"{CALIBRATION_RECORD!r} is reserved for the calibration, not a feature name")
    calibration = profile.calibration
    every = names if calibration is None else [*names, CALIBRATION_RECORD]
    records = [
        ReferenceRecord(
            model_id=model_id,
            model_version=model_version,
            feature=name,
            kind=profile[name].kind,
            profile=_with_importance(profile[name].to_dict(), profile.importances.get(name)),
            created_at=when,
            source=source,
            reference_id=reference_id,
            features=every,
        )
        for name in names
    ]
    if calibration is not None:
        record = ReferenceRecord(
            model_id=model_id, model_version=model_version, feature=CALIBRATION_RECORD,
            kind=CALIBRATION_KIND, profile=calibration.to_dict(), created_at=when, source=source,
            reference_id=reference_id, features=every,
        )  # fmt: skip
        records.append(record)
    return records


def _with_importance(data: dict[str, Any], importance: float | None) -> dict[str, Any]:
    return data if importance is None else {**data, "importance": importance}


def newest_complete(records: Iterable[ReferenceRecord]) -> list[ReferenceRecord] | None:
    """The records of the newest complete publication among those of one model version, in order.

    Newest = the latest ``created_at``; a publication is complete when a record of each of its
    ``features`` is present. An incomplete newest one falls back to the newest complete older one.
    """
    by_publication: dict[str, dict[str, ReferenceRecord]] = {}
    for record in records:
        by_publication.setdefault(record.reference_id, {})[record.feature] = record
    newest_first = sorted(
        by_publication.values(), key=lambda group: next(iter(group.values())).created_at, reverse=True
    )
    for group in newest_first:
        names = next(iter(group.values())).features
        if all(name in group for name in names):
            return [group[name] for name in names]
    return None


def profile_of(chosen: Iterable[ReferenceRecord]) -> ReferenceProfile:
    """The profile of one publication's records: the features, and the calibration if it has one."""
    features: dict[str, FeatureProfile] = {}
    calibration = None
    importances: dict[str, float] = {}
    for record in chosen:
        if record.is_calibration:
            calibration = record.calibration()
        else:
            features[record.feature] = record.feature_profile()
            importance = record.profile.get("importance")
            if isinstance(importance, int | float) and importance >= 0:
                importances[record.feature] = float(importance)
    return ReferenceProfile(features, calibration=calibration, importances=importances)


def assemble_reference(records: Iterable[ReferenceRecord]) -> ReferenceProfile | None:
    """The profile of the newest complete publication (see :func:`newest_complete`), or ``None``."""
    chosen = newest_complete(records)
    if chosen is None:
        return None
    return profile_of(chosen)
