"""The root ``modelmon`` command group and what every command module shares."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape

from modelmon import __version__
from modelmon.settings import Settings

console = Console(stderr=True)


def settings() -> Settings:
    """The settings from MODELMON_* environment variables."""
    return Settings()


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with code 2."""
    # Escaped: messages quote user input ('[accuracy-drop]', YAML snippets) that rich would
    # otherwise eat as markup or fail on. Soft wrap: no line breaks inside file paths in logs.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelmon")
def cli() -> None:
    """modelmon: streaming monitoring of ML models (drift, performance, data fidelity).

    Settings come from MODELMON_* environment variables (see docs/deploy.md, "Settings").
    """
