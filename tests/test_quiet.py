"""Quiet by default: what a new user sees from `make`, the packaging, the worker's log and the demo."""

from __future__ import annotations

import io
import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from rich.live import Live
from rich.table import Table

from modelmon.app.demo_view import EndsItsLine
from streams.run import FAUST_LOGGERS, quiet_faust

ROOT = Path(__file__).resolve().parents[1]


def test_make_says_that_installing_takes_a_while_before_the_silent_pip_step() -> None:
    rule = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert rule is not None
    steps = rule.group(1).splitlines()
    announce = next(
        i for i, step in enumerate(steps) if "installing" in step and "(about 1\u20132 minutes)" in step
    )
    first_pip = next(i for i, step in enumerate(steps) if "pip install --quiet" in step)
    assert announce < first_pip and steps[announce].lstrip().startswith("@echo")


def test_the_license_is_an_spdx_expression_setuptools_takes_without_a_deprecation_warning() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"  # a TOML table is deprecated (setuptools 77)
    assert "setuptools>=77" in project["build-system"]["requires"]


@pytest.fixture
def faust_levels() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in FAUST_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("faust_levels")
def test_worker_log_at_info_leaves_out_faust_tables_and_buffer_warnings() -> None:
    quiet_faust("info")
    level = {name: logging.getLogger(name).getEffectiveLevel() for name in FAUST_LOGGERS}
    assert logging.getLogger("aiokafka.consumer.subscription_state").getEffectiveLevel() == logging.WARNING
    assert level["faust.transport.producer"] > logging.WARNING  # "producer buffer full size ..."
    assert level["faust.worker"] == logging.INFO  # "[^Worker]: Ready" stays


@pytest.mark.usefixtures("faust_levels")
def test_worker_log_at_debug_keeps_everything() -> None:
    for name in FAUST_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET)
    quiet_faust("debug")
    assert all(logging.getLogger(name).level == logging.NOTSET for name in FAUST_LOGGERS)


@pytest.mark.parametrize("terminal", [False, True])
def test_the_demo_live_panel_ends_its_last_line(terminal: bool) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=80)
    with Live(console=console, refresh_per_second=20) as live:
        for step in range(3):
            panel = Table.grid(padding=(0, 2))
            panel.add_row("phase", f"step {step}")
            live.update(EndsItsLine(panel))
    console.print("summary")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", out.getvalue())
    assert text.endswith("phase  step 2\nsummary\n")
