"""Starting a worker process: topics, the data plane and the faust control plane."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any

import faust

from modelmon.admin import TopicLayoutError, ensure_topics
from modelmon.settings import Settings
from modelmon.spec import ModelSpec, load_specs, parse_duration
from streams.alerting import register_alerting
from streams.app import StartOffsets, build_app, worker_instance_id
from streams.auto_reference import ReferenceTopicPublisher
from streams.data_plane import DataPlane, joins_topic
from streams.references import ReferenceCatalog
from streams.routing import repartition_topic
from streams.state import state_producer
from streams.topology import partials_topic_name, register_topology

log = logging.getLogger(__name__)

MS = timedelta(milliseconds=1)


def internal_topics(settings: Settings) -> list[str]:
    """The worker's own topics, each with the partition count of the inputs."""
    prefix = settings.topic_prefix
    return [partials_topic_name(settings), repartition_topic(prefix), joins_topic(prefix)]


def prepare_topics(settings: Settings, specs: dict[str, ModelSpec] | None = None) -> int:
    """Create missing topics; return the partition count of ``predictions``.

    ``predictions``, ``ground-truth``, ``monitor-repartition`` and ``monitor-joins`` must have the
    same number of partitions (a worker owns partition *p* of all of them): a mismatch is an error
    that says so. The join changelog keeps a day more than the longest label TTL of ``specs``.
    """
    topics = settings.topics
    kafka, replication = settings.kafka_common(), settings.topic_replication
    counts = ensure_topics(kafka, topics.all(), partitions=settings.topic_partitions, replication=replication,
                           compacted=topics.compacted())  # fmt: skip
    partitions = counts[topics.predictions]
    ttl = max((parse_duration(spec.label_ttl) for spec in (specs or {}).values()), default=timedelta(days=7))
    retention = {
        joins_topic(settings.topic_prefix): {"retention.ms": str(int((ttl + timedelta(days=1)) / MS))}
    }
    counts |= ensure_topics(kafka, internal_topics(settings), partitions=partitions, replication=replication,
                            configs=retention)  # fmt: skip
    together = [topics.predictions, topics.ground_truth, repartition_topic(settings.topic_prefix),
                joins_topic(settings.topic_prefix)]  # fmt: skip
    if len({counts[name] for name in together}) != 1:
        shown = ", ".join(f"{name}: {counts[name]}" for name in together)
        raise TopicLayoutError(
            f"these topics must have the same number of partitions (a worker owns partition p of "
            f"each): {shown}. A topic a producer wrote to before any worker created it is auto-created "
            f"by the broker with its default count: recreate it with MODELMON_TOPIC_PARTITIONS partitions"
            f' (docs/deploy.md, "Scaling the workers")'
        )
    return partitions


@dataclass
class Worker:
    """What a worker process runs: the faust control plane, the data plane, the reference catalog."""

    app: faust.App
    data_plane: DataPlane
    catalog: ReferenceCatalog


def build_worker(settings: Settings) -> Worker:
    """The fully declared worker (specs loaded, topics created, reference profiles read)."""
    specs = load_specs(settings.models_path)
    partitions = prepare_topics(settings, specs)
    catalog = ReferenceCatalog(settings)
    catalog.start()
    if not catalog.wait_until_caught_up(30):
        log.warning("reference profiles not fully read after 30 s; drift waits for them")
    app = build_app(settings, partitions=partitions)
    start_offsets = StartOffsets(settings)
    producer = state_producer(settings)
    register_topology(
        app,
        settings,
        specs,
        catalog.get,
        publish_reference=ReferenceTopicPublisher(settings),
        references_ready=lambda: catalog.caught_up,
        start_offsets=start_offsets,
        producer=producer,
    )
    register_alerting(app, settings, specs, start_offsets, producer=producer)
    plane = DataPlane(
        settings,
        specs,
        catalog.get,
        partitions=partitions,
        instance_id=worker_instance_id(settings) + "-data",
    )
    log.info("worker for models %s on %d partitions", ", ".join(sorted(specs)), partitions)
    return Worker(app, plane, catalog)


def start_data_plane(plane: DataPlane) -> threading.Thread:
    """Run the data plane in a thread; if it fails (a delivery failed for good, the broker fenced it),
    the process exits with status 1 so that its supervisor restarts it: nothing past the failure
    was committed, and the restarted worker reads it again."""

    def run() -> None:
        try:
            plane.run()
        except BaseException:
            log.exception("the data plane stopped: exiting (what it held is read again after the restart)")
            logging.shutdown()
            os._exit(1)

    # Every event leaves a few dicts behind (its features, its join entry); with Python's default
    # thresholds the cyclic collector ran every ~35 events and re-scanned the join state as it grew
    # (a quarter of the data plane's CPU in bench/pipeline_micro.py). None of these form cycles.
    gc.set_threshold(50_000, 20, 100)
    thread = threading.Thread(target=run, name="data-plane", daemon=True)
    thread.start()
    return thread


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


#: Loggers that, at ``info``, print what only a faust developer reads: every service's Starting... and
#: Stopping..., aiokafka's subscriptions and assignments as tables, and the "producer buffer full"
#: warning of faust's table-changelog buffer (it waits, flushes and goes on: nothing is lost). The
#: worker's own lifecycle ("[^Worker]: Ready", "Stopping...") stays: operators and tests watch for it.
FAUST_LOGGERS = {"faust": logging.WARNING, "mode": logging.WARNING, "aiokafka": logging.WARNING,
                 "faust.transport.producer": logging.ERROR, "faust.worker": logging.INFO}  # fmt: skip


def quiet_faust(level: str) -> None:
    """Below ``debug``, keep faust's, mode's and aiokafka's routine lines out of the worker's log."""
    if getattr(logging, level.upper(), logging.INFO) > logging.DEBUG:
        for name, quiet in FAUST_LOGGERS.items():
            logging.getLogger(name).setLevel(quiet)


def run_worker(settings: Settings, *, on_exit: Callable[[], None] | None = None) -> None:
    """Run a worker in the foreground until SIGINT/SIGTERM; ``on_exit`` runs after it stopped.

    Services that share the process (``modelmon worker --with-sink``) are started by the caller
    and stopped through ``on_exit``: the worker itself knows nothing of the sinks.
    """
    worker = build_worker(settings)
    app = worker.app
    quiet_faust(settings.log_level)
    faust_worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)

    @app.task
    async def start_planes() -> None:
        # A task runs once the worker is up, after faust installed its signal handlers.
        exit_deadline_on_signals(settings.shutdown_timeout)
        start_data_plane(worker.data_plane)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def stop_data_plane(app: faust.App, **kwargs: Any) -> None:
        worker.data_plane.stop()

    try:
        faust_worker.execute_from_commandline()
    finally:
        worker.data_plane.stop()
        worker.catalog.stop()
        if on_exit is not None:
            on_exit()
