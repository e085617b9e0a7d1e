"""Which reference profile a bundle is folded on: the lookup both stages use, and a short id per profile.

Bundles merge only within one reference id (:mod:`streams.chunks`, :mod:`streams.stage2`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from detectors.profiles import ReferenceProfile

ReferenceLookup = Callable[[str, str], ReferenceProfile | None]
"""(model id, model version) -> the model's current reference profile, or None."""


def reference_id(profile: ReferenceProfile | None) -> str:
    """A short, stable id of a reference profile ('' for none): bundles merge only within one."""
    if profile is None:
        return ""
    # Asked for every bundle of every batch: hashing the profile's JSON each time took a quarter of a
    # worker's CPU. Profiles are read-only; the entry holds the profile, so its id is not reused.
    cached = _REFERENCE_IDS.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    digest = hashlib.sha1(profile.to_json().encode()).hexdigest()[:12]
    if len(_REFERENCE_IDS) >= 256:
        _REFERENCE_IDS.clear()
    _REFERENCE_IDS[id(profile)] = (profile, digest)
    return digest


_REFERENCE_IDS: dict[int, tuple[ReferenceProfile, str]] = {}
