"""A scenario's result row (what was produced, what is in ClickHouse, the outcome), light to import."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Counts = dict[str, int]


class ScenarioFailed(Exception):
    """The scenario cannot go on (e.g. a worker never started): its message is the row's outcome."""


@dataclass
class Result:
    """One row of the chaos table, and everything behind it (written to ``--json``)."""

    scenario: str
    quick: bool
    seed: int
    produced: Counts = field(default_factory=dict)
    stored: Counts = field(default_factory=dict)
    dead_expected: Counts = field(default_factory=dict)
    dead_got: Counts = field(default_factory=dict)
    outcome: str = "FAIL: not run"
    notes: list[str] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    log_tail: str = ""
    seconds: float = 0.0
    workdir: str = ""

    def judge(self, problems: list[str] | None = None) -> None:
        """``ok`` only when every count is exact and no other check failed; else what differed."""
        diffs: list[str] = []
        for key in sorted(set(self.produced) | set(self.stored)):
            want, got = self.produced.get(key, 0), self.stored.get(key, 0)
            if want != got:
                diffs.append(f"{key} {got:,} in ClickHouse, {want:,} produced")
        wrong = [
            f"{kind} {self.dead_got.get(kind, 0):,} (expected {self.dead_expected.get(kind, 0):,})"
            for kind in sorted(set(self.dead_expected) | set(self.dead_got))
            if self.dead_got.get(kind, 0) != self.dead_expected.get(kind, 0)
        ]
        if len(wrong) > 3:  # the notes list every type
            total, expected = sum(self.dead_got.values()), sum(self.dead_expected.values())
            diffs.append(f"dead letters {total:,} (expected {expected:,}), {len(wrong)} types differ")
        elif wrong:
            diffs.append("dead letters " + ", ".join(wrong))
        self.problems = list(problems or [])
        diffs.extend(self.problems)
        self.outcome = "ok" if not diffs else "FAIL: " + "; ".join(diffs)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Result:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
