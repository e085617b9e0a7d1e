"""Running a benchmark script of ``bench/`` as its reader would, for the bench smoke tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str | Path, timeout: float = 240) -> str:
    """``python bench/<script> <args>`` from the repository root; asserts exit 0; returns stdout."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout
