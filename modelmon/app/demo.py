"""`modelmon demo`: broker, worker, sink and ClickHouse on one machine, fed with a scripted synthetic story.

The demo starts the embedded Kafka-protocol broker, a ``modelmon worker`` subprocess and, in this
process, the ClickHouse sink on an embedded chDB directory. A producer thread sends the
:class:`~modelmon.app.scenario.Scenario` through the SDK at a steady rate (compressed event time: 30
one-minute windows in well under a minute) with late and missing labels, covariate drift, a burst
of malformed messages and concept drift, announced as they start. The live view reads ClickHouse.
At the end it prints (or, with ``--json``, emits as one JSON object) the events counted, the dead
letters, the alerts fired and resolved, the retrain requests with their evidence and the path of
the HTML/PNG report. Guarantees: the worker is stopped on every exit path (also Ctrl-C), the
workdir is wiped first so a second run starts clean, and the exit code is 0 only when every valid
event and every malformed message was accounted for in ClickHouse.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from modelmon.app.demo_summary import (
    alert_transitions,
    collect_summary,
    follow_up_commands,
    print_summary,
    read_progress,
)
from modelmon.app.demo_view import live_view, print_plan, timeline
from modelmon.app.producer import ScenarioProgress, produce_scenario
from modelmon.app.scenario import Injection, Scenario, write_training_file
from modelmon.settings import Settings, WebhookTarget
from modelmon.spec import ModelSpec, load_specs

__all__ = ["DemoConfig", "collect_summary", "print_summary", "run_demo"]

SETTLE_SECONDS = 3.0
"""Nothing new in ClickHouse for this long (after everything landed) ends the run."""
REFERENCE_ROWS = 1000
"""Training rows behind each reference: at most 1000 picks the tests with p-values (docs/detectors.md)."""
STALL_SECONDS = 30.0
"""Nothing new for this long after the producer finished: give up, report what is there."""


@dataclass(frozen=True)
class DemoConfig:
    events: int = 2000
    malformed: int = 50
    seed: int = 0
    rate: float = 200.0
    broker: str = "noida"
    workdir: Path = Path(".modelmon/demo")
    models_path: Path = Path("models")
    as_json: bool = False
    timeout: float = 300.0
    webhook: str | None = None
    webhook_secret: str | None = None
    windows: int = 30


@dataclass
class _Run:
    """What the live view shows and the announcements it has made."""

    started: float
    scenario: Scenario
    specs: dict[str, ModelSpec]
    sent: ScenarioProgress = field(default_factory=ScenarioProgress)
    announcements: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen_transitions: set[tuple[str, str]] = field(default_factory=set)

    def elapsed(self) -> str:
        return f"[+{time.monotonic() - self.started:5.1f} s]"

    def announce(self, text: str) -> None:
        with self.lock:
            self.announcements.append(f"{self.elapsed()} {text}")

    def take_announcements(self) -> list[str]:
        with self.lock:
            out, self.announcements = self.announcements, []
        return out


def _worker_settings(config: DemoConfig, bootstrap: str, workdir: Path) -> Settings:
    webhooks = []
    if config.webhook:
        secret = SecretStr(config.webhook_secret) if config.webhook_secret else None
        webhooks.append(WebhookTarget(url=config.webhook, secret=secret))
    return Settings(
        kafka_bootstrap=bootstrap,
        clickhouse_dsn=f"chdb://{workdir / 'clickhouse'}",
        models_path=config.models_path.resolve(),
        worker_data_dir=workdir / "worker",
        app_id="modelmon-demo",
        window_seconds=60,
        # Event time runs ~60x faster than the clock: a window closes once every input is a minute
        # past its end (later labels re-publish it), or after 5 s without news.
        allowed_lateness_seconds=60,
        window_grace_seconds=5.0,
        # Small chunks and rare idle revisions: each partial re-publishes every window its chunk
        # touches, and each re-published window is computed again in stage 2.
        chunk_size=200,
        idle_flush_seconds=2.0,
        batch_within=0.2,
        sink_flush_seconds=0.5,
        webhooks=webhooks,
        _env_file=None,  # type: ignore[call-arg]
    )


def _on_window(run: _Run, injections: list[Injection]) -> Any:
    def on_window(window: int, start: datetime) -> None:
        for injection in injections:
            label = injection.kind.replace("_", " ")
            if window == injection.start:
                run.announce(
                    escape(f"▶ window {window} ({start:%H:%M} event time): {label}: {injection.what}")
                )
            elif window == injection.end and injection.kind != "malformed_burst":
                run.announce(f"■ window {window} ({start:%H:%M} event time): {label} ends")

    return on_window


def _new_transitions(run: _Run, client: Any) -> None:
    for row in alert_transitions(client):
        key = (row["alert_id"], row["state"])
        if key in run.seen_transitions:
            continue
        run.seen_transitions.add(key)
        mark = "[red]FIRING[/]" if row["state"] == "firing" else "[green]resolved[/]"
        where = f"[{row['feature']}]" if row["feature"] else ""
        text = (
            f"{row['model_id']} {row['rule']}{where} (window {row['window_start']:%H:%M}): {row['message']}"
        )
        run.announce(f"{mark} {escape(text)}")


def _start_worker(settings: Settings, workdir: Path) -> tuple[subprocess.Popen[bytes], Any]:
    log = (workdir / "worker.log").open("wb")
    env = {**os.environ, **settings.to_env()}
    process = subprocess.Popen(
        [sys.executable, "-m", "modelmon", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    return process, log


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is None:
        worker.terminate()
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)


def register_references(
    settings: Settings, specs: dict[str, ModelSpec], directory: Path, seed: int
) -> list[str]:
    """Each model's reference from a file of training rows, published as `modelmon reference load` does.

    Published before the worker starts, so every window is compared with it from the first one on.
    Returns one line per model for the console.
    """
    from detectors.profiles.files import load_reference_file
    from streams.references import publish_reference

    lines = []
    for model_id, spec in specs.items():
        path = write_training_file(spec, directory / f"{model_id}.csv", REFERENCE_ROWS, seed)
        loaded = load_reference_file(path, spec)
        publish_reference(settings, model_id, "1", loaded.profile, loaded.source)
        lines.append(f"{model_id}: {loaded.rows} training rows, {len(loaded.profile)} profiles ({path})")
    return lines


def _write_report(
    client: Any, specs: dict[str, Any], out_dir: Path, since: timedelta, console: Console
) -> str | None:
    """The dashboards' key panels as PNG + HTML (dashboards.report); None if they could not be drawn."""
    from dashboards.report import write_report

    try:
        return str(write_report(client, list(specs), out_dir, since, specs=specs))
    except Exception as error:  # the pictures are a by-product: the demo's result stands without them
        console.print(f"[yellow]warning:[/] no report written: {error}", highlight=False)
        return None


def _watch(
    run: _Run,
    client: Any,
    worker: subprocess.Popen[bytes],
    producer: threading.Thread,
    config: DemoConfig,
    live: Live,
    workdir: Path,
) -> bool:
    """Refresh the live view until everything landed and settled; returns whether it all landed."""
    expected = config.events * len(run.specs)
    windows = run.scenario.windows * len(run.specs)
    deadline = time.monotonic() + config.timeout
    last_rows, changed_at = -1, time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}; see {workdir / 'worker.log'}")
        progress = read_progress(client)
        _new_transitions(run, client)
        for line in run.take_announcements():
            live.console.print(line, highlight=False)
        live.update(live_view(run.scenario, run.specs, run.sent, run.started, progress, expected, windows))
        if progress.rows != last_rows:
            last_rows, changed_at = progress.rows, time.monotonic()
        if producer.is_alive():
            continue
        quiet = time.monotonic() - changed_at
        landed = progress.events >= expected and progress.dead_letters >= config.malformed
        if landed and progress.windows_closed >= windows and quiet >= SETTLE_SECONDS:
            return True
        if quiet >= STALL_SECONDS:
            return landed
    return False


def run_demo(config: DemoConfig) -> int:
    """Run the demo; returns the process exit code."""
    from modelmon.app.broker import EmbeddedBroker
    from modelmon.app.wiring import migrated_client, start_sink_thread
    from streams.run import prepare_topics

    console = Console(stderr=config.as_json)
    workdir = config.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    specs = load_specs(config.models_path)
    scenario = Scenario(
        events=config.events,
        windows=config.windows,
        seed=config.seed,
        malformed=config.malformed,
        start=_origin(config.windows),
    )
    run = _Run(time.monotonic(), scenario, specs)
    console.print(
        f"[bold]modelmon demo[/]: {len(specs)} models ({', '.join(specs)}), {config.events} predictions each "
        f"at {config.rate:g}/s, seed {config.seed}, workdir {workdir}"
    )
    print_plan(console, scenario, specs, config.rate)
    ok = False
    errors: list[BaseException] = []
    with EmbeddedBroker(config.broker, data_dir=workdir / "broker") as broker:
        settings = _worker_settings(config, broker.bootstrap, workdir)
        console.print(f"  broker      {config.broker} on {broker.bootstrap}")
        prepare_topics(settings)
        client = migrated_client(settings)
        console.print(f"  clickhouse  embedded chDB at {workdir / 'clickhouse'}")
        for line in register_references(settings, specs, workdir / "reference", config.seed):
            console.print(f"  reference   {line}", highlight=False)
        sink = start_sink_thread(settings, client)
        worker, worker_log = _start_worker(settings, workdir)
        console.print(f"  worker      pid {worker.pid}, log {workdir / 'worker.log'}")
        if config.webhook:
            signed = "signed (X-Modelmon-Signature)" if config.webhook_secret else "unsigned"
            console.print(f"  webhook     alerts and retrain requests → {config.webhook}, {signed}")
        stop = threading.Event()

        def produce() -> None:
            try:
                produce_scenario(
                    settings,
                    specs,
                    scenario,
                    rate=config.rate,
                    progress=run.sent,
                    on_window=_on_window(run, scenario.injections(specs)),
                    stop=stop,
                )
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        producer = threading.Thread(target=produce, name="demo-producer", daemon=True)
        run.started = time.monotonic()
        producer.start()
        try:
            with Live(console=console, transient=config.as_json, refresh_per_second=4) as live:
                ok = _watch(run, client, worker, producer, config, live, workdir)
                for line in run.take_announcements():
                    live.console.print(line, highlight=False)
        finally:
            stop.set()
            producer.join(30)
            _stop_worker(worker)
            sink.stop()
            worker_log.close()
        if errors:
            raise RuntimeError(f"the producer failed: {errors[0]}") from errors[0]
        summary = collect_summary(client)
        summary.update(
            expected_events=config.events * len(specs),
            malformed_sent=config.malformed,
            complete=ok,
            seconds=round(time.monotonic() - run.started, 1),
            seed=config.seed,
            timeline=timeline(scenario, specs, config.rate),
            event_time={"start": scenario.origin.isoformat(), "end": scenario.end.isoformat()},
            webhook=config.webhook,
            worker_pid=worker.pid,
            clickhouse=str(workdir / "clickhouse"),
            worker_log=str(workdir / "worker.log"),
        )
        since = datetime.now(UTC) - scenario.origin + timedelta(minutes=5)
        summary["report"] = _write_report(client, specs, workdir / "report", since, console)
        summary["commands"] = follow_up_commands(workdir, config.models_path, since)
    if config.as_json:
        print(json.dumps(summary, default=str))
    else:
        print_summary(summary, console)
        verdict = "[green]complete[/]" if ok else "[red]incomplete[/]"
        console.print(
            f"{verdict}: {summary['events']}/{summary['expected_events']} events and "
            f"{summary['dead_letter']}/{config.malformed} dead letters landed; "
            f"{summary['alerts']['fired']} alerts fired, {summary['alerts']['resolved']} resolved, "
            f"{len(summary['retrain_requests'])} retrain requests, in {summary['seconds']} s. "
            f"Data: {summary['clickhouse']}"
        )
        if summary["report"]:
            console.print(f"Report (drift, performance, fidelity, alerts): [bold]{summary['report']}[/]")
        console.print("Look at this data again (the demo's own ClickHouse; `.venv/bin/` if not on PATH):")
        for command in summary["commands"]:
            console.print(f"  {command}", highlight=False, markup=False, soft_wrap=True)
    return 0 if ok else 1


def _origin(windows: int) -> datetime:
    """Event time of the first prediction: a window boundary far enough back that even the latest
    label (six minutes after the last prediction) is in the past."""
    now = datetime.now(UTC).replace(microsecond=0)
    aligned = now - timedelta(seconds=now.timestamp() % 60)
    return aligned - timedelta(minutes=windows + 8)
