"""Which window a bundle summarises (:class:`BundleKey`), and the id its closed state is saved under.

Part of the bundle (:mod:`streams.bundle` re-exports :class:`BundleKey`); stage 2 and the automatic
reference builder read the closed-window store by :func:`window_id`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BundleKey:
    """Which window a bundle summarises: model, version, segment ('' = whole model) and event time."""

    model_id: str
    model_version: str
    segment: str
    window_start_ms: int
    window_ms: int


def window_id(key: BundleKey, ref: str) -> str:
    """The key of a window folded on reference ``ref`` in the closed-window store.

    >>> window_id(BundleKey("m", "1", "", 60_000, 60_000), "")
    'm|1||60000|60000|'
    """
    return f"{key.model_id}|{key.model_version}|{key.segment}|{key.window_start_ms}|{key.window_ms}|{ref}"
