"""Which broker to use and how to run one: from the test environment, or in the foreground.

``broker_from_env`` picks the broker the tests and benchmarks run against (``MODELMON_TEST_BROKER``);
``run_foreground`` is ``modelmon broker``. The broker itself is :class:`modelmon.app.broker.EmbeddedBroker`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from typing import Any

from modelmon.app.broker import DEFAULT_EXTERNAL_BOOTSTRAP, KINDS, BrokerError, EmbeddedBroker

logger = logging.getLogger(__name__)


def broker_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> EmbeddedBroker:
    """Build (not start) the broker named by ``MODELMON_TEST_BROKER``.

    ``MODELMON_TEST_BROKER``: ``noida`` (default), ``tansu`` or ``external``. For ``external``,
    ``MODELMON_TEST_KAFKA`` is the bootstrap address (default ``127.0.0.1:9092``); an address
    off loopback is refused unless ``MODELMON_TEST_KAFKA_ALLOW_REMOTE=1``.
    ``overrides`` go to ``EmbeddedBroker``.

    >>> broker_from_env({"MODELMON_TEST_BROKER": "tansu"})
    EmbeddedBroker(kind='tansu', not started)
    >>> broker_from_env({"MODELMON_TEST_BROKER": "kafka"})
    Traceback (most recent call last):
    ...
    ValueError: MODELMON_TEST_BROKER='kafka' is not a broker kind; valid: noida, tansu, external
    """
    env = os.environ if environ is None else environ
    kind = env.get("MODELMON_TEST_BROKER", "").strip().lower() or "noida"
    if kind not in KINDS:
        raise ValueError(f"MODELMON_TEST_BROKER={kind!r} is not a broker kind; valid: {', '.join(KINDS)}")
    if kind == "external":
        bootstrap = env.get("MODELMON_TEST_KAFKA", "").strip() or DEFAULT_EXTERNAL_BOOTSTRAP
        overrides.setdefault("bootstrap", bootstrap)
        allow_remote = env.get("MODELMON_TEST_KAFKA_ALLOW_REMOTE", "").lower() in ("1", "true", "yes")
        overrides.setdefault("allow_remote", allow_remote)
    return EmbeddedBroker(kind, **overrides)


def run_foreground(
    kind: str = "noida",
    port: int | None = 9092,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    on_ready: Callable[[EmbeddedBroker], None] | None = None,
    stop_event: threading.Event | None = None,
) -> None:
    """Run a broker until SIGINT/SIGTERM (or ``stop_event``), then stop it and return.

    ``on_ready`` is called with the started broker (the CLI prints its address there). Raises
    ``BrokerError`` if the broker dies on its own. Signal handlers are installed only when
    called from the main thread, and restored on return.
    """
    if kind == "external":
        raise ValueError("run_foreground starts a broker; kind must be 'noida' or 'tansu'")
    stop = stop_event if stop_event is not None else threading.Event()
    previous: dict[signal.Signals, Any] = {}

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received %s; stopping the broker", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for caught in (signal.SIGINT, signal.SIGTERM):
            previous[caught] = signal.signal(caught, request_stop)
    try:
        with EmbeddedBroker(kind, port=port, data_dir=data_dir) as broker:
            if on_ready is not None:
                on_ready(broker)
            while not stop.wait(0.5):
                if not broker.running:
                    raise BrokerError(f"the {kind} broker exited unexpectedly{broker._output()}")
    finally:
        for caught, handler in previous.items():
            signal.signal(caught, handler)
