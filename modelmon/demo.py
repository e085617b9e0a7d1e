"""`modelmon demo`: broker, worker, sink and ClickHouse on one machine, fed with synthetic traffic."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from modelmon.settings import Settings
from modelmon.spec import load_specs


@dataclass(frozen=True)
class DemoConfig:
    events: int = 3000
    malformed: int = 50
    seed: int = 0
    broker: str = "noida"
    workdir: Path = Path(".modelmon/demo")
    models_path: Path = Path("models")
    as_json: bool = False
    timeout: float = 180.0


def collect_summary(client: Any) -> dict[str, Any]:
    """What landed in ClickHouse, as a JSON-able dict."""
    from sinks.queries import dead_letter_samples, dead_letters_by_type, events_per_model

    per_model = events_per_model(client)
    dead = dead_letters_by_type(client)
    return {
        "events": sum(per_model.values()),
        "events_per_model": per_model,
        "dead_letter": sum(dead.values()),
        "dead_letter_by_type": dead,
        "dead_letter_samples": dead_letter_samples(client),
    }


def print_summary(summary: dict[str, Any], console: Console) -> None:
    table = Table(title="Valid events counted in ClickHouse (metric_points, metric='events')")
    table.add_column("model")
    table.add_column("events", justify="right")
    for model, n in summary["events_per_model"].items():
        table.add_row(model, str(n))
    console.print(table)
    dead = Table(title="Dead letters (topic dead-letter → ClickHouse dead_letters)")
    dead.add_column("error type")
    dead.add_column("count", justify="right")
    for kind, n in summary["dead_letter_by_type"].items():
        dead.add_row(kind, str(n))
    console.print(dead)
    for sample in summary.get("dead_letter_samples", [])[:3]:
        console.print(f"  [dim]{sample['error_type']}[/]: {sample['reason']}", highlight=False)


def _wait_for(predicate: Any, timeout: float, progress_update: Any) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, value = predicate()
        progress_update(value)
        if done:
            return True
        time.sleep(0.5)
    return False


def _write_report(client: Any, specs: dict[str, Any], out_dir: Path, console: Console) -> str | None:
    """The dashboards' key panels as PNG + HTML (dashboards.report); None if they could not be drawn."""
    from dashboards.report import write_report

    try:
        return str(write_report(client, list(specs), out_dir, "1h", specs=specs))
    except Exception as error:  # the pictures are a by-product: the demo's result stands without them
        console.print(f"[yellow]warning:[/] no report written: {error}", highlight=False)
        return None


def run_demo(config: DemoConfig) -> int:
    """Run the demo; returns the process exit code."""
    from modelmon.broker import EmbeddedBroker
    from modelmon.producer import produce_synthetic
    from sinks.clickhouse import connect
    from sinks.consumer import ClickHouseSink
    from sinks.migrate import migrate
    from sinks.queries import dead_letters_by_type, events_per_model
    from sinks.writer import ClickHouseWriter
    from streams.run import prepare_topics

    console = Console(stderr=config.as_json)
    workdir = config.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    specs = load_specs(config.models_path)
    started = time.monotonic()

    console.print(f"[bold]modelmon demo[/]: {len(specs)} models ({', '.join(specs)}), workdir {workdir}")
    with EmbeddedBroker(config.broker, data_dir=workdir / "broker") as broker:
        settings = Settings(
            kafka_bootstrap=broker.bootstrap,
            clickhouse_dsn=f"chdb://{workdir / 'clickhouse'}",
            models_path=config.models_path.resolve(),
            worker_data_dir=workdir / "worker",
            app_id="modelmon-demo",
            _env_file=None,  # type: ignore[call-arg]
        )
        console.print(f"  broker      {config.broker} on {broker.bootstrap}")
        prepare_topics(settings)
        client = connect(settings.clickhouse_dsn)
        migrate(client)
        console.print(f"  clickhouse  embedded chDB at {workdir / 'clickhouse'}")
        sink = ClickHouseSink(settings, ClickHouseWriter(client))
        sink.start_thread()
        worker_log = (workdir / "worker.log").open("wb")
        env = {**os.environ, **settings.to_env()}
        worker = subprocess.Popen(
            [sys.executable, "-m", "modelmon", "worker"], env=env, stdout=worker_log, stderr=subprocess.STDOUT
        )
        console.print(f"  worker      pid {worker.pid}, log {workdir / 'worker.log'}")
        expected = config.events * len(specs)
        ok = False
        try:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=config.as_json,
            ) as progress:
                sending = progress.add_task("produce predictions", total=expected)
                produce_synthetic(
                    settings,
                    specs,
                    config.events,
                    seed=config.seed,
                    malformed=config.malformed,
                    on_progress=lambda n: progress.update(sending, completed=n),
                )
                counted = progress.add_task("counted in ClickHouse", total=expected)
                dead = progress.add_task("dead-lettered", total=config.malformed)

                def landed() -> tuple[bool, tuple[int, int]]:
                    n = sum(events_per_model(client).values())
                    d = sum(dead_letters_by_type(client).values())
                    if worker.poll() is not None:
                        raise RuntimeError(
                            f"the worker exited with {worker.returncode}; see {workdir / 'worker.log'}"
                        )
                    return n >= expected and d >= config.malformed, (n, d)

                def show(value: tuple[int, int]) -> None:
                    progress.update(counted, completed=value[0])
                    progress.update(dead, completed=value[1])

                ok = _wait_for(landed, config.timeout, show)
        finally:
            worker.terminate()
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
            sink.stop()
            worker_log.close()
        summary = collect_summary(client)
        summary.update(
            expected_events=expected,
            malformed_sent=config.malformed,
            complete=ok,
            seconds=round(time.monotonic() - started, 1),
            clickhouse=str(workdir / "clickhouse"),
            worker_log=str(workdir / "worker.log"),
        )
        summary["report"] = _write_report(client, specs, workdir / "report", console)
    if config.as_json:
        print(json.dumps(summary, default=str))
    else:
        print_summary(summary, console)
        verdict = "[green]complete[/]" if ok else "[red]incomplete (timed out)[/]"
        console.print(
            f"{verdict}: {summary['events']}/{expected} events and "
            f"{summary['dead_letter']}/{config.malformed} dead letters landed in {summary['seconds']} s. "
            f"Data: {summary['clickhouse']}"
        )
        if summary["report"]:
            console.print(f"Report (drift, performance, fidelity, alerts): [bold]{summary['report']}[/]")
    return 0 if ok else 1
