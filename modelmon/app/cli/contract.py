"""Commands about the contract: ``schema export|markdown`` and ``spec check``."""

from __future__ import annotations

from pathlib import Path

import click

from modelmon.app.cli.base import cli, fail, settings


@cli.group()
def schema() -> None:
    """The event contract as JSON Schema."""


@schema.command("export")
@click.argument("directory", type=click.Path(path_type=Path))
def schema_export(directory: Path) -> None:
    """Write one JSON Schema file per event type into DIRECTORY."""
    from modelmon.schema import export_schemas

    for path in export_schemas(directory):
        click.echo(str(path))


@schema.command("markdown")
def schema_markdown() -> None:
    """Print the contract as Markdown tables (the generated part of docs/events.md)."""
    from modelmon.schema import schemas_markdown

    click.echo(schemas_markdown())


@cli.group()
def spec() -> None:
    """Model specs."""


@spec.command("check")
@click.argument("path", type=click.Path(path_type=Path), required=False)
def spec_check(path: Path | None) -> None:
    """Validate model specs (default: MODELMON_MODELS_PATH), and that each reference file exists."""
    from modelmon.app.cli.base import reference_file
    from modelmon.spec import SpecError, load_specs_with_files
    from streams.change import check_change_spec

    try:
        specs = load_specs_with_files(path or settings().models_path)
        for model, _ in specs.values():
            check_change_spec(model)  # detector settings: checked where the worker would refuse them
    except SpecError as error:
        fail(str(error))
    missing = []
    for model, origin in specs.values():
        file = reference_file(model, origin)
        if file is not None and not file.is_file():
            missing.append(
                f"{origin}: field 'reference.path': {model.reference.path!r} is not a file: {file} "
                "(a relative path is relative to the spec file; fix the path or create the file)"
            )
    if missing:
        fail("\n".join(missing))
    for model_id, (model, origin) in specs.items():
        file = reference_file(model, origin)
        reference = f", reference {file}" if file is not None else ""
        click.echo(
            f"ok  {model_id}: {model.task.value}, {len(model.features)} features, "
            f"{len(model.alerts)} rules{reference}"
        )
