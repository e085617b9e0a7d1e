"""The root ``modelmon`` command group and what every command module shares."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from modelmon import __version__
from modelmon.settings import Settings
from modelmon.spec import ModelSpec

console = Console(stderr=True)


def settings() -> Settings:
    """The settings from MODELMON_* environment variables."""
    return Settings()


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: wrong input, 1: it failed)."""
    # Escaped: messages quote user input ('[accuracy-drop]', YAML snippets) that rich would
    # otherwise eat as markup or fail on. Soft wrap: no line breaks inside file paths in logs.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def warn(message: str) -> None:
    """Print ``warning: message`` on stderr."""
    console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


class _Root(click.Group):
    """The root group: an error a command raises becomes one message and exit code 1 (failures.py)."""

    def invoke(self, ctx: click.Context) -> Any:
        if not ctx.params.get("debug"):
            # ClickHouse's driver and its HTTP pool warn before they raise what the message of the
            # failure (or the start-up retry's line per attempt) then says in one line.
            for name in ("clickhouse_connect", "urllib3.connectionpool"):
                logging.getLogger(name).setLevel(logging.ERROR)
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            ctx.exit(130)
        except Exception as error:
            if ctx.params.get("debug"):
                raise
            from modelmon.app.cli.failures import explain

            try:
                config = settings()
            except Exception:  # invalid MODELMON_* variables: explain() says which
                config = Settings.model_construct()
            fail(explain(error, config), code=1)


@click.group(cls=_Root, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelmon")
@click.option("--debug", is_flag=True, help="Show the traceback of a failure instead of a one-line message.")
def cli(debug: bool) -> None:
    """modelmon: streaming monitoring of ML models (drift, performance, data fidelity).

    Settings come from MODELMON_* environment variables (see docs/deploy.md, "Settings").
    """


def reference_file(spec: ModelSpec, spec_file: Path) -> Path | None:
    """The spec's ``reference.path``, a relative one resolved against the spec file's directory.

    Only the CLI reads the file (``modelmon reference load``, ``modelmon spec check``); parsing a
    spec never checks that it exists, since workers do not need it.

    >>> from modelmon.spec import parse_spec
    >>> spec = parse_spec({"model_id": "m", "task": "binary", "features": {"x": {"type": "numerical"}},
    ...                    "reference": {"source": "file", "path": "../data/train.csv"}})
    >>> reference_file(spec, Path("/srv/models/m.yaml"))
    PosixPath('/srv/models/../data/train.csv')
    """
    if not spec.reference.path:
        return None
    path = Path(spec.reference.path).expanduser()
    return path if path.is_absolute() else spec_file.parent / path
