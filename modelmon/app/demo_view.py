"""The demo's console views: the announced plan and the live progress panel."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.table import Table

from modelmon.app.demo_summary import Progress
from modelmon.app.producer import ScenarioProgress
from modelmon.app.scenario import Scenario
from modelmon.spec import ModelSpec


def timeline(scenario: Scenario, specs: dict[str, ModelSpec], rate: float) -> list[dict[str, Any]]:
    """The announced plan: each injection's windows, event times and expected wall-clock offset."""
    per_window = scenario.events / scenario.windows * len(specs)
    out = []
    for injection in scenario.injections(specs):
        out.append(
            {
                "kind": injection.kind,
                "windows": [injection.start, injection.end - 1],
                "event_time_start": scenario.window_start(injection.start).isoformat(),
                "event_time_end": scenario.window_start(injection.end).isoformat(),
                "expected_after_seconds": round(injection.start * per_window / rate, 1) if rate > 0 else None,
                "what": injection.what,
            }
        )
    return out


def print_plan(console: Console, scenario: Scenario, specs: dict[str, ModelSpec], rate: float) -> None:
    table = Table(title="The plan (event time is compressed: one-minute windows, ~seconds of wall time each)")
    for column in ("windows", "event time (UTC)", "≈ when", "what"):
        table.add_column(column)
    first = scenario.covariate[0] - 1
    table.add_row(f"0-{first}", scenario.window_start(0).strftime("%H:%M"), "+0 s", "normal traffic")
    for item in timeline(scenario, specs, rate):
        first, last = item["windows"]
        when = (
            f"+{item['expected_after_seconds']:.0f} s" if item["expected_after_seconds"] is not None else ""
        )
        label = item["kind"].replace("_", " ")
        table.add_row(
            f"{first}-{last}" if last > first else str(first),
            item["event_time_start"][11:16],
            when,
            f"{label}: {item['what']}",
        )
    console.print(table)


class EndsItsLine:
    """``renderable``, plus a line break when the output is a file or a pipe.

    rich's ``Live`` writes its last frame there once, when it stops, and without a final line break:
    the next line printed (the demo's summary) would continue the panel's last row.
    """

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.renderable
        if not console.is_terminal:
            yield Segment.line()


def live_view(
    scenario: Scenario,
    specs: dict[str, ModelSpec],
    sent: ScenarioProgress,
    started: float,
    progress: Progress | None,
    expected: int,
    windows: int,
) -> EndsItsLine:
    """The live panel: phase, what was sent, what ClickHouse holds."""
    elapsed = max(time.monotonic() - started, 1e-6)
    active = [
        i.kind.replace("_", " ")
        for i in scenario.injections(specs)
        if i.start <= sent.window < i.end and i.kind != "malformed_burst"
    ]
    phase = ", ".join(active) or "normal traffic"
    event_time = sent.event_time.strftime("%H:%M:%S") if sent.event_time else "-"
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "phase", f"{phase}  (window {max(sent.window, 0)}/{scenario.windows}, event time {event_time})"
    )
    table.add_row(
        "produced",
        f"{sent.predictions:,}/{expected:,} predictions · {sent.labels:,} labels · {sent.malformed} malformed"
        f"  ({sent.predictions / elapsed:,.0f}/s)",
    )
    if progress is not None:
        table.add_row(
            "processed",
            f"{progress.events:,} events counted in ClickHouse ({progress.events / elapsed:,.0f}/s) · "
            f"windows closed {progress.windows_closed}/{windows}",
        )
        table.add_row(
            "outcomes",
            f"alerts firing {progress.alerts_firing} (fired {progress.alerts_fired}, resolved "
            f"{progress.alerts_resolved}) · retrain requests {progress.retrain_requests} · "
            f"dead letters {progress.dead_letters}",
        )
    return EndsItsLine(table)
