"""The ``fairness`` section of a model spec: sensitive attributes, favourable outcome (docs/fairness.md)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

TAG_PREFIX = "tag:"


class FairnessSpec(BaseModel):
    """Which attributes define the groups, which prediction is favourable, and the smallest group."""

    model_config = ConfigDict(extra="forbid")

    attributes: list[str] = Field(
        min_length=1, description="Categorical or boolean feature names, or tag:<name> for a tag."
    )
    favourable: str | None = Field(
        default=None, description="The favourable predicted class; default: the spec's positive_class."
    )
    min_group_size: int = Field(default=30, ge=0, description="Smaller groups are reported, not compared.")

    @field_validator("favourable", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """A class label written as a number or boolean is compared as text (``1``, ``true`` → ``"1"``)."""
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return str(value)
        return value

    def favourable_class(self, positive_class: str) -> str:
        """The favourable predicted class: ``favourable``, else the spec's ``positive_class``."""
        return positive_class if self.favourable is None else self.favourable

    def tag(self, attribute: str) -> str | None:
        """The tag an attribute names (``tag:region`` → ``region``), None for a feature."""
        return attribute.removeprefix(TAG_PREFIX) if attribute.startswith(TAG_PREFIX) else None


def check_fairness(cls: Any, fairness: FairnessSpec | None, info: ValidationInfo) -> FairnessSpec | None:
    """Field validator of ``ModelSpec.fairness``: binary models, known categorical/boolean attributes."""
    if fairness is None or "task" not in info.data or "features" not in info.data:
        return fairness  # the task or features are invalid; that error is reported already
    if info.data["task"] != "binary":
        raise ValueError(
            f"fairness applies to binary classifiers only (task is {str(info.data['task'])!r}): selection, "
            "true- and false-positive rates need one favourable class"
        )
    repeated = sorted({a for a in fairness.attributes if fairness.attributes.count(a) > 1})
    if repeated:
        raise ValueError(f"attributes must not repeat entries; repeated: {repeated}")
    features = info.data["features"]
    for attribute in fairness.attributes:
        if "=" in attribute:
            raise ValueError(f"attribute {attribute!r}: names must not contain '=' (it separates groups)")
        tag = fairness.tag(attribute)
        if tag is not None:
            if not tag:
                raise ValueError(f"attribute {attribute!r}: write tag:<name>, e.g. tag:region")
            continue
        if attribute not in features:
            raise ValueError(
                f"attribute {attribute!r} is not a feature of the spec ({sorted(features)}); "
                "write tag:<name> for a tag"
            )
        kind = features[attribute].type.value
        if kind == "numerical":
            raise ValueError(
                f"attribute {attribute!r} is numerical: groups need a categorical or boolean feature "
                "(bin it upstream into a categorical feature or a tag)"
            )
    return fairness
