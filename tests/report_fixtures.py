"""The figures a report saved, by file name: tests assert on what was drawn, not on pixels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from matplotlib.figure import Figure

__all__ = ["figures"]


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> dict[str, Figure]:
    """File name → the figure the report saved under it."""
    saved: dict[str, Figure] = {}
    original = Figure.savefig

    def capture(self: Figure, path: Any, *args: Any, **kwargs: Any) -> None:
        saved[Path(path).name] = self
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", capture)
    return saved
