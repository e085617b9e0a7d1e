"""Starting a worker process: topics, the faust app, and optionally the in-process ClickHouse sink."""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import faust

from modelmon.admin import ensure_topics
from modelmon.settings import Settings
from modelmon.spec import load_specs
from streams.alerting import register_alerting
from streams.app import build_app
from streams.auto_reference import ReferenceTopicPublisher
from streams.references import ReferenceCatalog
from streams.topology import partials_topic_name, register_topology

log = logging.getLogger(__name__)


def prepare_topics(settings: Settings) -> int:
    """Create missing topics; return the partition count of ``predictions``."""
    topics = settings.topics
    counts = ensure_topics(
        settings.kafka_common(),
        [*topics.all(), partials_topic_name(settings)],
        partitions=settings.topic_partitions,
        replication=settings.topic_replication,
        compacted=topics.compacted(),
    )
    return counts[topics.predictions]


def build_worker_app(settings: Settings) -> faust.App:
    """The fully declared faust app of a worker (specs loaded, topics created)."""
    specs = load_specs(settings.models_path)
    partitions = prepare_topics(settings)
    catalog = ReferenceCatalog(settings)
    catalog.start()
    if not catalog.wait_until_caught_up(30):
        log.warning("reference profiles not fully read after 30 s; drift waits for them")
    app = build_app(settings, partitions=partitions)
    register_topology(
        app,
        settings,
        specs,
        catalog.get,
        publish_reference=ReferenceTopicPublisher(settings),
        references_ready=lambda: catalog.caught_up,
    )
    register_alerting(app, settings, specs)
    log.info("worker for models %s on %d partitions", ", ".join(sorted(specs)), partitions)
    return app


def exit_deadline_on_signals(seconds: float) -> None:
    """After SIGTERM or SIGINT, leave the process at the latest ``seconds`` later, stopped cleanly or not.

    faust's own shutdown waits for the broker (commits, producer flush, leaving the group), which
    with an unreachable broker takes half a minute or more. Nothing needs that wait: inputs are
    acknowledged only after their outputs are safe, so whatever is still held is replayed by the
    next owner. faust's handlers keep running (the event loop is woken by the signal either way);
    this one only arms the deadline.
    """
    previous: dict[int, Any] = {}

    def arm(signum: int, frame: FrameType | None) -> None:
        def exit_now() -> None:
            log.warning("not stopped %.1f s after %s: exiting now (held inputs are replayed)", seconds,
                        signal.Signals(signum).name)  # fmt: skip
            logging.shutdown()
            os._exit(0)

        timer = threading.Timer(seconds, exit_now)
        timer.daemon = True
        timer.start()
        handler = previous.get(signum)
        if callable(handler):
            handler(signum, frame)

    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, arm)


def run_worker(settings: Settings, *, with_sink: bool = False) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM."""
    app = build_worker_app(settings)
    sink = None
    if with_sink:
        from sinks.clickhouse import connect
        from sinks.consumer import ClickHouseSink
        from sinks.migrate import migrate
        from sinks.writer import ClickHouseWriter

        client = connect(settings.clickhouse_dsn)
        migrate(client)
        sink = ClickHouseSink(settings, ClickHouseWriter(client))
        sink.start_thread()
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)

    @app.task
    async def arm_exit_deadline() -> None:
        # A task runs once the worker is up, after faust installed its signal handlers.
        exit_deadline_on_signals(settings.shutdown_timeout)

    try:
        worker.execute_from_commandline()
    finally:
        if sink is not None:
            sink.stop()
