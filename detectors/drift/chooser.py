"""The default drift method for a feature, by kind, reference size and number of distinct values."""

from __future__ import annotations

from modelmon.kinds import check_kind

SMALL_REFERENCE = 1000
"""Up to this many reference values, a statistical test; above it, a distance (tests flag everything)."""

FEW_VALUES = 5
"""A numerical feature with at most this many distinct values is compared on bins, like a category."""


def choose_method(kind: str, n_reference: int, n_unique: int, *, sampled: bool = False) -> str:
    """Pick a method the way Evidently does, from the reference's size and cardinality.

    ``sampled`` says a side is a summary whose reservoir holds only part of its values. A distance
    between two bounded samples has a noise floor (normalised Wasserstein of 0.03-0.1 between
    1024- and 4096-value samples of the *same* distribution), so for large numerical references
    the exact binned Jensen-Shannon distance on the reference deciles is used instead.

    ===========  ====================================  ====================  ==================
    kind         distinct values in the reference      n_reference <= 1000   n_reference > 1000
    ===========  ====================================  ====================  ==================
    boolean      any                                   z_proportion          jensen_shannon
    categorical  <= 2                                  z_proportion          jensen_shannon
    categorical  > 2                                   chi_square            jensen_shannon
    numerical    <= 5                                  jensen_shannon        jensen_shannon
    numerical    > 5                                   ks                    wasserstein
    numerical    > 5, ``sampled``                      ks                    jensen_shannon
    ===========  ====================================  ====================  ==================

    >>> choose_method("numerical", 500, 400), choose_method("numerical", 50_000, 40_000)
    ('ks', 'wasserstein')
    >>> choose_method("categorical", 800, 12), choose_method("boolean", 800, 2)
    ('chi_square', 'z_proportion')
    >>> choose_method("categorical", 50_000, 12), choose_method("numerical", 50_000, 40_000, sampled=True)
    ('jensen_shannon', 'jensen_shannon')
    """
    checked = check_kind(kind)
    small = n_reference <= SMALL_REFERENCE
    if checked == "numerical":
        if n_unique <= FEW_VALUES:
            return "jensen_shannon"
        if small:
            return "ks"
        return "jensen_shannon" if sampled else "wasserstein"
    if not small:
        return "jensen_shannon"
    if checked == "boolean" or n_unique <= 2:
        return "z_proportion"
    return "chi_square"
