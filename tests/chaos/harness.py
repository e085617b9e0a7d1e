"""One scenario's world: its broker, settings, worker and sink processes, and its ClickHouse counts."""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelmon.admin import ensure_topics
from modelmon.app.broker import EmbeddedBroker
from modelmon.settings import Settings
from sinks.clickhouse import Client, connect
from sinks.consumer import ClickHouseSink
from sinks.migrate import migrate
from sinks.queries import dead_letters_by_type, events_per_model, metric_totals
from sinks.writer import ClickHouseWriter, InsertClient
from tests.chaos.result import Counts, Result, ScenarioFailed
from tests.workers import SinkProcess, WorkerProcess, make_settings, wait_until

__all__ = ["Counts", "Result", "ScenarioFailed", "World"]

#: Worker log lines worth showing when a scenario fails.
_NOTEWORTHY = re.compile(r"Traceback|ERROR|CRITICAL|Error:|exiting now|crashed")


class World:
    """What one scenario runs against: a fresh noida broker, a topic prefix, worker and sink processes,
    and (for the scenarios that read it in this process) the embedded ClickHouse engine of its directory.

    chDB allows one engine per process and one process per directory, so a scenario either runs its
    sink here (``start_sink``) and reads counts live, or runs it as a child (``start_sink_process``)
    and reads the directory only after the child stopped, from a new interpreter.
    """

    def __init__(self, name: str, workdir: Path, *, quick: bool, seed: int) -> None:
        self.name = name
        self.dir = workdir
        self.quick = quick
        self.rng = random.Random(f"{seed}:{name}")
        self.models = workdir / "models"
        self.prefix = f"chaos{uuid.uuid4().hex[:6]}."
        self.dsn = f"chdb://{workdir / 'clickhouse'}"
        self.broker: EmbeddedBroker | None = None
        self.workers: list[WorkerProcess] = []
        self.sink_processes: list[SinkProcess] = []
        self.sinks: list[ClickHouseSink] = []
        self._client: Client | None = None
        self._log_counts: dict[str, int] = {}
        self._started = time.monotonic()
        self.thread_errors: list[str] = []
        previous = threading.excepthook

        def record(args: threading.ExceptHookArgs) -> None:  # e.g. the in-process sink's thread dying
            name = args.thread.name if args.thread is not None else "?"
            self.thread_errors.append(f"{name}: {args.exc_type.__name__}: {args.exc_value}")
            previous(args)

        threading.excepthook = record

    @property
    def wait_timeout(self) -> float:
        """The longest a scenario waits for its counts (it gives up sooner when nothing moves)."""
        return 150.0 if self.quick else 480.0

    # -- progress ---------------------------------------------------------------------------
    def say(self, message: str) -> None:
        print(f"  [{self.name} {time.monotonic() - self._started:5.1f}s] {message}", flush=True)

    # -- the pieces -------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        assert self.broker is not None, "start_broker() first"
        return self.broker.bootstrap

    def start_broker(self, port: int | None = None) -> EmbeddedBroker:
        """A noida-db broker with its data in this scenario's directory (kept across restarts)."""
        broker = EmbeddedBroker(kind="noida", port=port, data_dir=self.dir / "broker")
        broker.start()
        self.broker = broker
        return broker

    def settings(self, **extra: Any) -> Settings:
        """Quick-moving settings (small batches and chunks, short grace), ``extra`` on top.

        Creates the public topics, so a sink or producer may start before a worker; the worker creates
        its internal ones itself. (Not ``streams.run.prepare_topics``: importing the worker's modules
        takes seconds, and only the worker processes need them.)"""
        fields: dict[str, Any] = {
            "batch_size": 100,
            "chunk_size": 500,
            "allowed_lateness_seconds": 0,
            "window_grace_seconds": 2.0,
            "idle_flush_seconds": 0.5,
            "max_event_age": "7d",  # production's default: the scenarios send recent event times
            "sink_batch_size": 500,
            "sink_flush_seconds": 0.2,
            "clickhouse_dsn": self.dsn,
            **extra,
        }
        settings = make_settings(self.bootstrap, self.prefix, self.dir, self.models, **fields)
        topics = settings.topics
        ensure_topics(
            settings.kafka_common(),
            topics.all(),
            partitions=settings.topic_partitions,
            compacted=topics.compacted(),
        )
        return settings

    def start_worker(self, settings: Settings, name: str = "worker") -> WorkerProcess:
        """A ``python -m modelmon worker``; its log is ``<name>-<n>.log`` (n counts its starts)."""
        count = self._log_counts[name] = self._log_counts.get(name, 0) + 1
        worker = WorkerProcess(settings, self.dir / f"{name}-{count}.log")
        self.workers.append(worker)
        return worker

    def wait_ready(self, workers: list[WorkerProcess], timeout: float = 120.0) -> None:
        """Until every worker logged faust's ``Worker]: Ready`` (agents running, partitions assigned)
        and, for a worker whose stage 1 runs its own consumer (``data plane reading ...``), that this
        consumer got its partitions (``data plane: assigned``)."""

        def ready(worker: WorkerProcess) -> bool:
            if not worker.alive:
                raise ScenarioFailed(f"{worker.log_path.stem} exited with code {worker.process.returncode}")
            text = worker.log_path.read_text(errors="replace")
            data_plane = "data plane reading" not in text or "data plane: assigned" in text
            return "Worker]: Ready" in text and data_plane

        if not wait_until(lambda: all(ready(w) for w in workers), timeout, interval=0.2):
            raise ScenarioFailed(f"the worker(s) were not ready after {timeout:.0f} s")

    def start_sink_process(self, settings: Settings) -> SinkProcess:
        """A ``python -m modelmon sink`` child that owns this scenario's chDB directory."""
        count = len(self.sink_processes) + 1
        sink = SinkProcess(settings, self.dir / f"sink-{count}.log")
        self.sink_processes.append(sink)
        return sink

    def clickhouse(self) -> Client:
        """This process's engine on the scenario's directory (migrated)."""
        if self._client is None:
            self._client = connect(self.dsn)
            migrate(self._client)
        return self._client

    def start_sink(self, settings: Settings, client: InsertClient | None = None) -> ClickHouseSink:
        """The real sink in a thread of this process, writing through ``client`` (default: the engine)."""
        sink = ClickHouseSink(settings, ClickHouseWriter(client or self.clickhouse()))
        sink.start_thread()
        self.sinks.append(sink)
        return sink

    # -- reading ClickHouse ---------------------------------------------------------------------
    def counts(self, model_id: str) -> Counts:
        """Events and joined labels of a model in ClickHouse (deduplicated, whole model, all windows)."""
        client = self.clickhouse()
        labels = sum(t.value for t in metric_totals(client, "labels", model_id))
        return {"events": events_per_model(client).get(model_id, 0), "labels": int(labels)}

    def dead_letters(self) -> Counts:
        return dead_letters_by_type(self.clickhouse())

    def settle(
        self,
        read: Callable[[], Counts],
        expected: Counts,
        *,
        timeout: float | None = None,
        settle: float | None = None,
        dead_letters: int | None = None,
        stall: float | None = None,
    ) -> tuple[Counts, list[str]]:
        """Wait until every count of ``read()`` reaches ``expected`` (and, if given, the dead letters in
        ClickHouse reach ``dead_letters``), then ``settle`` seconds more, and read again: replays landing
        late must not have made anything grow. Gives up after ``timeout`` seconds (default
        :attr:`wait_timeout`), or when nothing moved for a while (a lost event never arrives).
        Returns (counts, problems)."""
        timeout = self.wait_timeout if timeout is None else timeout
        settle = (3.0 if self.quick else 5.0) if settle is None else settle
        stall = (60.0 if self.quick else 120.0) if stall is None else stall
        state: dict[str, Any] = {"shown": 0.0, "moved": time.monotonic(), "text": None, "why": ""}

        def done() -> bool:
            if self.workers and not any(w.alive for w in self.workers):
                state["why"] = "no worker is running"
                return True
            if any(error.startswith("clickhouse-sink") for error in self.thread_errors):
                state["why"] = "the in-process sink stopped"
                return True
            counts = read()
            if dead_letters is not None:
                counts["dead letters"] = sum(self.dead_letters().values())
            want = {**expected, **({"dead letters": dead_letters} if dead_letters is not None else {})}
            if all(counts.get(k, 0) >= v for k, v in want.items()):
                return True
            now = time.monotonic()
            text = ", ".join(f"{v:,}/{want.get(k, 0):,} {k}" for k, v in counts.items())
            if text != state["text"]:
                state.update(moved=now, text=text)
                if now - state["shown"] >= 5:
                    self.say(f"counted {text}")
                    state["shown"] = now
            elif now - state["moved"] > stall:
                state["why"] = f"gave up: nothing moved for {stall:.0f} s"
                return True
            return False

        problems: list[str] = []
        if not wait_until(done, timeout, interval=1.0):
            problems.append(f"counts still short after waiting {timeout:.0f} s")
        elif state["why"]:
            problems.append(state["why"])
        else:
            time.sleep(settle)
        return read(), problems

    # -- failures ---------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """What went wrong outside the counts: a thread that died (the in-process sink's, say)."""
        return [f"thread {error[:300]}" for error in self.thread_errors]

    def log_tail(self, lines: int = 25) -> str:
        """Noteworthy lines of every worker and sink log, and the tail of the last worker's."""
        parts: list[str] = []
        logs = [w.log_path for w in self.workers] + [s.log_path for s in self.sink_processes]
        for path in logs:
            if not path.exists():
                continue
            found = [
                ln[:240] for ln in path.read_text(errors="replace").splitlines() if _NOTEWORTHY.search(ln)
            ]
            if found:
                parts.append(f"--- {path.name}: {len(found)} noteworthy line(s), last ones:")
                parts.extend(found[-6:])
        if self.workers and self.workers[-1].log_path.exists():
            tail = self.workers[-1].log_path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- tail of {self.workers[-1].log_path.name}:")
            parts.extend(line[:240] for line in tail)
        return "\n".join(parts)

    def close(self) -> None:
        """Stop everything this scenario started: sinks, workers, then the broker."""
        for sink in self.sinks:
            sink.stop()
        for process in self.sink_processes:
            process.stop()
        running = [w for w in self.workers if w.alive]
        for worker in running:  # all at once: each takes a second or two to stop cleanly
            worker.process.terminate()
        for worker in running:
            worker.stop()
        if self.broker is not None:
            self.broker.stop()
