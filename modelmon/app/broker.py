"""Starts, checks and stops the Kafka-protocol broker used by tests, the demo and `modelmon broker`."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, cast

from confluent_kafka.admin import AdminClient

# Names defined there stay importable from here (`from modelmon.app.broker import free_port`).
from modelmon.app.broker_process import (
    INSTALL_HINTS,
    BrokerBinaryNotFound,
    BrokerError,
    accepts_connections,
    broker_command,
    check_loopback_bootstrap,
    find_binary,
    free_port,
    port_in_use,
    spawn,
    terminate,
)
from modelmon.app.broker_process import STOP_GRACE_SECONDS as STOP_GRACE_SECONDS
from modelmon.app.broker_process import is_loopback as is_loopback
from modelmon.settings import CONSUMER_DEFAULTS

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("noida", "tansu", "external")
LOG_NAME = "broker.log"
DEFAULT_EXTERNAL_BOOTSTRAP = "127.0.0.1:9092"


def _quiet_admin(bootstrap: str) -> AdminClient:
    """An admin client that retries fast and logs through ``logging`` instead of stderr."""
    config: dict[str, Any] = {
        "bootstrap.servers": bootstrap,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 250,
        "logger": logging.getLogger(f"{__name__}.librdkafka"),
        "log_level": 3,
    }
    return AdminClient(config)


class EmbeddedBroker:
    """A Kafka-protocol broker on loopback: a noida-db or Tansu subprocess, or an external one.

    Parameters
    ----------
    kind
        ``"noida"`` (noida-db, persists to ``data_dir``), ``"tansu"`` (Tansu, memory only) or
        ``"external"`` (no process; ``bootstrap`` must be given and is only checked).
    port
        Port to listen on; ``None`` or 0 picks a free one.
    data_dir
        Where the broker keeps its data and ``broker.log``. ``None`` makes a temporary directory
        that ``stop()`` removes; a given directory is kept.
    bootstrap
        ``host:port`` of an external broker.
    start_timeout
        Seconds to wait for the broker to answer a metadata request.
    binary
        Path of the broker executable, instead of looking it up.
    allow_remote
        Allow an external bootstrap that is not on loopback.
    die_with_parent
        Linux: the broker is sent SIGTERM when the thread that started it exits. Leave it on
        unless ``start()`` runs in a short-lived thread.

    ``start()`` returns once a metadata request succeeds; ``stop()`` sends SIGTERM to the
    broker's process group, waits up to ``STOP_GRACE_SECONDS``, then sends SIGKILL.
    """

    def __init__(
        self,
        kind: str = "noida",
        *,
        port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        bootstrap: str | None = None,
        start_timeout: float = 30.0,
        binary: str | os.PathLike[str] | None = None,
        allow_remote: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown broker kind {kind!r}; valid: {', '.join(KINDS)}")
        if kind == "external":
            if not bootstrap:
                raise ValueError("an external broker needs bootstrap='host:port'")
            if not allow_remote:
                check_loopback_bootstrap(bootstrap)
        elif bootstrap is not None:
            raise ValueError(f"bootstrap is only for kind='external', not {kind!r}")
        if port is not None and not 0 <= port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be > 0, got {start_timeout}")
        self.kind = kind
        self.port = port
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.start_timeout = start_timeout
        self.binary = Path(binary) if binary is not None else None
        self.allow_remote = allow_remote
        self.die_with_parent = die_with_parent
        self._external_bootstrap = bootstrap
        self._reset()

    def _reset(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._workdir: Path | None = None
        self._owns_workdir = False
        self._bound_port: int | None = None
        self._started = False

    # -- read-only state -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the running broker (or the external address)."""
        if self.kind == "external":
            return cast(str, self._external_bootstrap)
        if self._bound_port is None:
            raise BrokerError("the broker is not started")
        return f"127.0.0.1:{self._bound_port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker subprocess, None for an external or stopped broker."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        if self.kind == "external":
            return self._started
        return self._process is not None and self._process.poll() is None

    @property
    def workdir(self) -> Path | None:
        """The data directory in use (the temporary one, when none was given)."""
        return self._workdir

    @property
    def log_path(self) -> Path | None:
        """The file the broker's stdout and stderr go to."""
        return self._workdir / LOG_NAME if self._workdir is not None else None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the broker's output, for error messages."""
        path = self.log_path
        if path is None or not path.exists():
            return ""
        with path.open("rb") as handle:
            tail = deque(handle, maxlen=lines)
        return b"".join(tail).decode("utf-8", errors="replace").rstrip()

    def client_config(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """librdkafka settings for a client of this broker, with ``extra`` on top."""
        return {"bootstrap.servers": self.bootstrap, **(extra or {})}

    def consumer_config(self, group_id: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Consumer settings that work on every broker kind (see docs/broker.md), with ``extra`` on top.

        ``session.timeout.ms=6000`` because Tansu delays a group join by half the session
        timeout; reading starts at the earliest offset; offsets are committed explicitly; a large
        fetch response is accepted (``Settings.kafka_consumer`` says why).
        """
        base = {
            **CONSUMER_DEFAULTS,
            "group.id": group_id,
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        return self.client_config({**base, **(extra or {})})

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the broker (or check the external one) and wait until it answers metadata."""
        if self._started:
            raise BrokerError(f"the {self.kind} broker is already started at {self.bootstrap}")
        if self.kind == "external":
            self._wait_for_metadata(deadline=time.monotonic() + self.start_timeout)
            self._started = True
            logger.info("external Kafka broker reachable at %s", self.bootstrap)
            return self
        binary = self.binary if self.binary is not None else find_binary(self.kind)
        if not binary.is_file():
            raise BrokerBinaryNotFound(
                f"the {self.kind} broker binary {binary} does not exist; "
                f"install it with: {INSTALL_HINTS[self.kind]}"
            )
        if self.port and port_in_use(self.port):
            raise BrokerError(f"port {self.port} on 127.0.0.1 is already in use")
        self._prepare_workdir()
        try:
            # A free port can be taken between our probe and the broker's bind: retry on a new one.
            for attempts_left in reversed(range(3 if not self.port else 1)):
                port = self.port or free_port()
                self._spawn(binary, port)
                try:
                    self._wait_until_ready(port)
                    break
                except _ExitedEarly:
                    if not attempts_left:
                        raise
                    logger.warning("%s broker exited at start on port %d; retrying", self.kind, port)
                    self._terminate()
        except BaseException:
            self.stop()
            raise
        self._started = True
        logger.info(
            "%s broker ready at %s (pid %s, data %s)", self.kind, self.bootstrap, self.pid, self._workdir
        )
        return self

    def stop(self) -> None:
        """Stop the broker: SIGTERM, up to ``STOP_GRACE_SECONDS``, then SIGKILL. Idempotent."""
        if self.kind == "external":
            self._started = False
            return
        if self._process is None and self._workdir is None:
            return
        self._terminate()
        workdir, owns = self._workdir, self._owns_workdir
        self._reset()
        if owns and workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
        logger.info("%s broker stopped", self.kind)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.bootstrap if (self._started or self.kind == "external") else "not started"
        return f"EmbeddedBroker(kind={self.kind!r}, {where})"

    # -- internals ---------------------------------------------------------------------------

    def _prepare_workdir(self) -> None:
        if self.data_dir is not None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self._workdir, self._owns_workdir = self.data_dir.resolve(), False
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"modelmon-{self.kind}-"))
            self._owns_workdir = True

    def _spawn(self, binary: Path, port: int) -> None:
        assert self._workdir is not None
        command = broker_command(self.kind, binary, port, self._workdir)
        self._log_file = (self._workdir / LOG_NAME).open("ab")
        self._process = spawn(command, self._workdir, self._log_file, self.die_with_parent)
        self._bound_port = port

    def _wait_until_ready(self, port: int) -> None:
        deadline = time.monotonic() + self.start_timeout
        # Wait for the listening socket first: librdkafka logs every refused connection.
        while not accepts_connections(port):
            self._raise_if_exited()
            if time.monotonic() > deadline:
                raise self._timeout_error()
            time.sleep(0.02)
        self._wait_for_metadata(deadline)

    def _wait_for_metadata(self, deadline: float) -> None:
        admin = _quiet_admin(self.bootstrap)
        last_error: Exception | None = None
        while True:
            if self.kind != "external":
                self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                admin.list_topics(timeout=min(1.0, max(remaining, 0.1)))
                return
            except Exception as exc:  # KafkaException: not answering yet
                last_error = exc
        if self.kind == "external":
            raise BrokerError(
                f"no Kafka broker answered a metadata request at {self.bootstrap} within "
                f"{self.start_timeout:.0f} s (last error: {last_error})"
            )
        raise self._timeout_error()

    def _raise_if_exited(self) -> None:
        assert self._process is not None
        code = self._process.poll()
        if code is not None:
            raise _ExitedEarly(
                f"the {self.kind} broker exited with code {code} before it was ready{self._output()}"
            )

    def _output(self) -> str:
        # A temporary data dir is removed with the failed broker, so its log is quoted, not named.
        where = "" if self._owns_workdir else f" (log {self.log_path})"
        return f"{where}; its output:\n{self.log_tail()}"

    def _timeout_error(self) -> BrokerError:
        return BrokerError(
            f"the {self.kind} broker did not answer a metadata request at {self.bootstrap} within "
            f"{self.start_timeout:.0f} s{self._output()}"
        )

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            terminate(process, self.kind)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._bound_port = None


class _ExitedEarly(BrokerError):
    """The broker process ended before it answered."""
