"""The chaos table: rows, notes, the command that ran and the git commit it ran on."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.chaos.result import Counts, Result

REPO = Path(__file__).resolve().parents[2]
HEADER = ("scenario", "produced", "in ClickHouse", "dead letters (expected/got)", "outcome")


def git_commit() -> str:
    """``git rev-parse --short HEAD``, with ``+dirty`` when the working tree has changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + ("+dirty" if status else "")


def command_line(argv: list[str] | None = None) -> str:
    """How this run was started, as a shell command relative to the repository."""
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(REPO))
    except ValueError:
        shown = "python"
    args = sys.argv[1:] if argv is None else argv
    return " ".join([shown, "-m", "tests.chaos", *(shlex.quote(a) for a in args)])


def _counts(counts: Counts) -> str:
    if not counts:
        return "-"
    return ", ".join(f"{value:,} {key}" for key, value in counts.items())


def _dead(result: Result) -> str:
    want, got = sum(result.dead_expected.values()), sum(result.dead_got.values())
    return f"{want:,}/{got:,}"


def table(results: list[Result]) -> str:
    """One Markdown table, one row per scenario."""
    rows = [HEADER, tuple("---" for _ in HEADER)]
    for r in results:
        stored = {key: r.stored.get(key, 0) for key in r.produced} | r.stored
        rows.append((r.scenario, _counts(r.produced), _counts(stored), _dead(r), r.outcome.replace("|", "/")))
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def notes(results: list[Result]) -> str:
    """What each scenario did and measured, beyond the counts."""
    lines = []
    for r in results:
        kinds = sorted(set(r.dead_expected) | set(r.dead_got))
        per_type = ", ".join(f"{k} {r.dead_expected.get(k, 0):,}/{r.dead_got.get(k, 0):,}" for k in kinds)
        items = list(r.notes) + ([f"dead letters per error_type (expected/got): {per_type}"] if kinds else [])
        if items:
            lines.append(f"- `{r.scenario}`: " + "; ".join(items))
    return "\n".join(lines)


def render(results: list[Result], command: str, commit: str, quick: bool) -> str:
    mode = "quick" if quick else "full"
    body = [table(results), "", notes(results), "", f"command: `{command}` ({mode})", f"commit: {commit}"]
    return "\n".join(body)
