"""Every failure a user can cause ends in one or two lines that name the fix, exit code 1, no traceback.

Each case runs ``python -m modelmon`` as a subprocess of the checked-out code, in an empty working
directory, with ``MODELMON_STARTUP_TIMEOUT=3`` so that the start-up retries give up within seconds.
Nothing listens on port 1: it stands for a Kafka broker, ClickHouse server or Grafana that is down.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelmon.app.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[1]
DOWN = "127.0.0.1:1"
MAX_LINES = 5


@dataclass(frozen=True)
class Run:
    code: int
    output: str  # stdout and stderr

    @property
    def lines(self) -> list[str]:
        """The lines about the failure: not blank, not a service's INFO log of its progress."""
        return [line for line in self.output.splitlines() if line.strip() and " INFO " not in line]


def environment(**settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MODELMON_")}
    env.update(
        PYTHONPATH=str(ROOT),
        COLUMNS="200",  # one message line per line, whatever the terminal of the test run
        MODELMON_MODELS_PATH=str(ROOT / "models"),
        MODELMON_STARTUP_TIMEOUT="3",
        MODELMON_KAFKA_BOOTSTRAP=DOWN,
    )
    env.update(settings)
    return env


def modelmon(cwd: Path, *args: str, timeout: float = 60, **settings: str) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "modelmon", *args],
        cwd=cwd,
        env=environment(**settings),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Run(done.returncode, done.stdout + done.stderr)


def assert_one_message(run: Run, *fixes: str, code: int = 1) -> None:
    """Exit ``code``, no traceback, at most a few lines, and the message names each of ``fixes``."""
    assert run.code == code, run.output
    assert "Traceback" not in run.output, run.output
    assert len(run.lines) <= MAX_LINES, run.output
    for fix in fixes:
        assert fix in run.output, f"{fix!r} not in:\n{run.output}"


class HeldStore:
    """A chdb directory with one model's metrics, held by another process (as a running sink holds it)."""

    DSN = "chdb://./store"

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, self.DSN],
            cwd=cwd,
            env=environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def release(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()  # the holder exits when its stdin closes
            self.process.wait(30)


HOLDER = """
import sys
from datetime import UTC, datetime, timedelta
from modelmon.events import MetricPoint
from sinks.clickhouse import connect
from sinks.migrate import migrate
from sinks.writer import ClickHouseWriter

client = connect(sys.argv[1])
migrate(client)
start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
end = start + timedelta(minutes=1)
point = MetricPoint(model_id="fraud-detector", metric="events", window_start=start, window_end=end,
                    value=10, source="stage2")
ClickHouseWriter(client).write([point])
print("ready", flush=True)
sys.stdin.read()
"""


def parallel(*calls: Callable[[], Run]) -> list[Run]:
    with ThreadPoolExecutor(max_workers=3) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def test_held_chdb_directory_then_report_of_a_model_without_data(tmp_path: Path) -> None:
    store = HeldStore(tmp_path)
    try:
        held = modelmon(tmp_path, "status", MODELMON_CLICKHOUSE_DSN=store.DSN)
    finally:
        store.release()
    assert_one_message(held, "another process is using this directory", "one process per data directory")

    nosuch = modelmon(tmp_path, "report", "--model", "nosuch", MODELMON_CLICKHOUSE_DSN=store.DSN)
    assert_one_message(nosuch, "no metrics for nosuch in the last 1h", "models with metrics: fraud-detector")


def test_nothing_stored_yet_names_the_demo_data(tmp_path: Path) -> None:
    (tmp_path / ".modelmon" / "demo" / "clickhouse").mkdir(parents=True)
    runs = parallel(lambda: modelmon(tmp_path, "status"), lambda: modelmon(tmp_path, "report"))
    for run, command in zip(runs, ("status", "report"), strict=True):
        assert_one_message(
            run,
            "nothing is stored in ClickHouse at chdb://./.modelmon/clickhouse yet",
            "run `modelmon sink`",
            f"MODELMON_CLICKHOUSE_DSN=chdb://./.modelmon/demo/clickhouse modelmon {command}",
        )


@pytest.mark.parametrize(
    "args",
    [("status",), ("migrate",), ("report",), ("sink",), ("worker", "--with-sink")],
    ids=lambda args: " ".join(args),
)
def test_clickhouse_server_down(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = modelmon(tmp_path, *args, MODELMON_CLICKHOUSE_DSN=f"http://{DOWN}")
    assert_one_message(
        run, f"cannot connect to ClickHouse at http://{DOWN}: Connection refused", "MODELMON_CLICKHOUSE_DSN"
    )
    if args[0] in ("sink", "worker"):  # retried at start-up, one line per attempt, then given up
        assert "attempt 1, retrying" in run.output and "attempts in 3 s)" in run.output, run.output


@pytest.mark.parametrize("args", [("worker",), ("produce", "--events", "10"), ("sink",)], ids=" ".join)
def test_kafka_broker_down(tmp_path: Path, args: tuple[str, ...]) -> None:
    run = modelmon(tmp_path, *args)
    assert_one_message(
        run, f"cannot reach the Kafka broker at {DOWN} (Connection refused", "check MODELMON_KAFKA_BOOTSTRAP"
    )
    # librdkafka reconnects about 20 times a second, each with its own log line: shown once.
    assert sum("Connection refused" in line for line in run.lines) <= 3, run.output


def test_grafana_down(tmp_path: Path) -> None:
    run = modelmon(tmp_path, "dashboards", "push", "--url", f"http://{DOWN}")
    assert_one_message(run, f"cannot reach Grafana at http://{DOWN}: Connection refused", "check --url")


def test_broker_port_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = modelmon(tmp_path, "broker", "--port", str(port))
    assert_one_message(run, f"port {port} on 127.0.0.1 is already in use", "--port")


def test_reference_published_but_not_stored_fails(tmp_path: Path, kafka_broker: EmbeddedBroker) -> None:
    reference = tmp_path / "reference.csv"
    reference.write_text(
        "amount,account_age_d,n_tx_24h,merchant_risk,country,channel,is_new_device\n"
        "12.5,300,2,0.1,DE,web,false\n3.0,20,7,0.6,FR,app,true\n"
    )
    run = modelmon(
        tmp_path,
        "reference",
        "load",
        "fraud-detector",
        str(reference),
        MODELMON_KAFKA_BOOTSTRAP=kafka_broker.bootstrap,
        MODELMON_TOPIC_PREFIX="cli-failures.",
        MODELMON_CLICKHOUSE_DSN=f"http://{DOWN}",
    )
    assert run.code == 1 and "Traceback" not in run.output, run.output
    assert "published 7 messages" in run.output, run.output
    assert "published to Kafka, but not stored in ClickHouse" in run.output, run.output
    assert f"cannot connect to ClickHouse at http://{DOWN}: Connection refused" in run.output, run.output
    assert "--no-store" in run.output, run.output


def test_invalid_setting_usage_error_and_debug(tmp_path: Path) -> None:
    invalid, usage, debug = parallel(
        lambda: modelmon(tmp_path, "status", MODELMON_STARTUP_TIMEOUT="soon"),
        lambda: modelmon(tmp_path, "report", "--since", "a while"),
        lambda: modelmon(tmp_path, "--debug", "migrate", MODELMON_CLICKHOUSE_DSN=f"http://{DOWN}"),
    )
    assert_one_message(invalid, "invalid setting: MODELMON_STARTUP_TIMEOUT")
    assert_one_message(usage, "'a while'", code=2)
    assert debug.code == 1 and "Traceback" in debug.output and "ClickHouseError" in debug.output
