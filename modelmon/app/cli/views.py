"""Commands that show what is stored: ``status``, ``report`` and ``dashboards export|push``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.console import Console

from modelmon.app.cli.base import cli, fail, settings, warn


@cli.command()
@click.option("--model", "model_id", default=None, help="One model in detail: drift per feature, alerts.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def status(model_id: str | None, as_json: bool) -> None:
    """Each model's latest window: events, accuracy or MAE, drift, firing alerts, reference."""
    import json

    from modelmon.app.cli.failures import stored_client
    from modelmon.app.status import MissingTables, check_tables, collect_status, model_detail
    from modelmon.app.status_view import print_detail, print_status
    from modelmon.spec import SpecError, load_specs
    from sinks.clickhouse import describe

    config = settings()
    target = describe(config.clickhouse_dsn)
    notes = []
    try:
        specs = load_specs(config.models_path)
    except SpecError as error:  # status still shows what is stored; the specs only add reference goals
        specs, notes = {}, [f"specs not read: {str(error).splitlines()[0]}"]
    client = stored_client(config, "status")  # connection errors and an empty database: one line, exit 1
    result: dict[str, Any] | None
    try:
        if model_id is None:
            result = collect_status(client, specs, target) | {"notes": notes}
        else:
            check_tables(client)
            result = model_detail(client, model_id, specs.get(model_id))
    except MissingTables as error:
        fail(f"{target} lacks modelmon tables ({error}): run `modelmon migrate` with this ClickHouse DSN")
    if result is None:
        fail(f"no metrics of model {model_id!r} in {target} (`modelmon status` lists the models)")
    if as_json:
        click.echo(json.dumps(result, default=str))
    elif model_id is None:
        print_status(result, Console())
    else:
        print_detail(result, Console())


@cli.command()
@click.option(
    "--model", "models", multiple=True, help="Model id (repeatable); default: every model with data."
)
@click.option("--since", default="1h", show_default=True, help="Time range ending now, e.g. 30m, 6h, 2d.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
@click.option(
    "--compare",
    nargs=2,
    default=None,
    metavar="A B",
    help="Also compare version B (challenger) with A (champion): accuracy per window, tests of accuracy, "
    "binary precision and recall over all.",
)
def report(models: tuple[str, ...], since: str, out_dir: Path, compare: tuple[str, str] | None) -> None:
    """Render the key dashboard panels to PNG files and one self-contained HTML page."""
    from dashboards.report import models_with_data, write_report
    from modelmon.app.cli.failures import stored_client
    from modelmon.spec import SpecError, load_specs, parse_duration

    config = settings()
    try:
        parse_duration(since)
        specs = load_specs(config.models_path)
    except (SpecError, ValueError) as error:
        fail(str(error))
    client = stored_client(config, "report")
    with_data = models_with_data(client, since)
    chosen = list(models) or with_data
    if not chosen:
        fail(f"no model has metrics in the last {since}", code=1)
    if missing := [model for model in chosen if model not in with_data]:
        shown = ", ".join(with_data) or "none"
        fail(f"no metrics for {', '.join(missing)} in the last {since}; models with metrics: {shown}", code=1)
    extra = _compare_versions(client, chosen, compare, since, out_dir) if compare else []
    click.echo(str(write_report(client, chosen, out_dir, since, specs=specs, extra=extra)))


def _compare_versions(
    client: Any, models: list[str], versions: tuple[str, str], since: str, out_dir: Path
) -> list[Any]:
    """``report --compare A B``: one picture per model with both versions, the verdicts on stdout."""
    from datetime import UTC, datetime

    from dashboards.compare import compare_versions, write_comparison
    from dashboards.report import Picture
    from dashboards.runner import TimeRange
    from modelmon.spec import parse_duration

    end = datetime.now(UTC)
    time_range = TimeRange(end - parse_duration(since), end)
    pictures = []
    for model in models:
        try:
            result = write_comparison(compare_versions(client, model, *versions, time_range), out_dir)
        except (LookupError, ValueError) as error:
            warn(f"{model}: not compared: {error}")
            continue
        click.echo(result.summary())
        if result.path is not None:
            title = f"Accuracy: v{versions[1]} against v{versions[0]}"
            pictures.append(Picture(model, title, result.path, len(result.windows), caption=result.summary()))
    return pictures


@cli.group()
def dashboards() -> None:
    """Grafana dashboards as code (docs/dashboards.md)."""


@dashboards.command("export")
@click.argument("directory", type=click.Path(path_type=Path))
def dashboards_export(directory: Path) -> None:
    """Write the dashboard JSON and provisioning YAML under DIRECTORY (json/, provisioning/)."""
    from dashboards.export import export
    from modelmon.spec import SpecError, load_specs

    try:
        specs = load_specs(settings().models_path)
    except SpecError as error:
        fail(str(error))
    for path in export(directory, specs):
        click.echo(str(path))


@dashboards.command("push")
@click.option("--url", required=True, help="Grafana base URL, e.g. http://localhost:3000.")
@click.option("--token", envvar="GRAFANA_TOKEN", default=None, help="Service-account token [GRAFANA_TOKEN].")
@click.option("--user", default=None, help="Basic-auth user (instead of a token).")
@click.option(
    "--password", envvar="GRAFANA_PASSWORD", default=None, help="Basic-auth password [GRAFANA_PASSWORD]."
)
def dashboards_push(url: str, token: str | None, user: str | None, password: str | None) -> None:
    """Upload the dashboards into the folder "modelmon" (same uid overwrites; idempotent)."""
    from grafana_client.client import GrafanaException

    from dashboards.push import connect, push
    from modelmon.app.cli.failures import reason
    from modelmon.spec import SpecError, load_specs

    try:
        result = push(
            connect(url, token=token, user=user, password=password), load_specs(settings().models_path)
        )
    except (SpecError, ValueError, GrafanaException) as error:
        fail(f"push to {url} failed: {error}")
    except OSError as error:  # connection refused, unknown host, TLS (niquests' errors are OSErrors)
        fail(f"cannot reach Grafana at {url}: {reason(error)}; check --url and that Grafana runs", code=1)
    click.echo(f"folder modelmon {'created' if result.folder_created else 'exists'}")
    for uid, path in result.dashboards.items():
        click.echo(f"saved {uid}  {url.rstrip('/')}{path}")
    if not result.datasource_found:
        warn("no datasource with uid modelmon-clickhouse in Grafana")
