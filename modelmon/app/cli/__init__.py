"""The ``modelmon`` command line: one module per command group.

- :mod:`~modelmon.app.cli.services`: ``worker``, ``sink``, ``migrate``, ``broker``
- :mod:`~modelmon.app.cli.contract`: ``schema export|markdown``, ``spec check``
- :mod:`~modelmon.app.cli.references`: ``reference load``
- :mod:`~modelmon.app.cli.traffic`: ``produce``, ``demo``
- :mod:`~modelmon.app.cli.views`: ``status``, ``report``, ``dashboards export|push``

Each module registers its commands on the root group of :mod:`~modelmon.app.cli.base` when imported.
"""

from __future__ import annotations

from modelmon.app.cli import contract, references, services, traffic, views
from modelmon.app.cli.base import cli

__all__ = ["cli", "contract", "main", "references", "services", "traffic", "views"]


def main() -> None:
    cli(prog_name="modelmon")
