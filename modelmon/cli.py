"""The ``modelmon`` command line: worker, sink, migrate, broker, schema, spec, reference, demo, report, ..."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from modelmon import __version__
from modelmon.settings import Settings

console = Console(stderr=True)


def _settings() -> Settings:
    return Settings()


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _fail(message: str) -> None:
    # Escaped: messages quote user input ('[accuracy-drop]', YAML snippets) that rich would
    # otherwise eat as markup or fail on. Soft wrap: no line breaks inside file paths in logs.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelmon")
def cli() -> None:
    """modelmon: streaming monitoring of ML models (drift, performance, data fidelity).

    Settings come from MODELMON_* environment variables (see docs/deploy.md, "Settings").
    """


@cli.command()
@click.option("--with-sink", is_flag=True, help="Also run the ClickHouse sink in this process.")
def worker(with_sink: bool) -> None:
    """Run a stream worker (faust): validate, join labels, aggregate windows, publish metrics, alert."""
    from modelmon.spec import SpecError
    from streams.run import run_worker

    settings = _settings()
    _setup_logging(settings.log_level)
    try:
        run_worker(settings, with_sink=with_sink)
    except SpecError as error:
        _fail(str(error))


@cli.command()
def sink() -> None:
    """Run the ClickHouse sink: insert metrics, alerts, retrain requests and dead letters."""
    import signal

    from sinks.clickhouse import connect
    from sinks.consumer import ClickHouseSink
    from sinks.migrate import migrate
    from sinks.writer import ClickHouseWriter

    settings = _settings()
    _setup_logging(settings.log_level)
    client = connect(settings.clickhouse_dsn)
    migrate(client)
    runner = ClickHouseSink(settings, ClickHouseWriter(client))
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop())
    runner.run()


@cli.command("migrate")
def migrate_command() -> None:
    """Apply ClickHouse schema migrations (idempotent)."""
    from sinks.clickhouse import connect, describe
    from sinks.migrate import migrate

    settings = _settings()
    applied = migrate(connect(settings.clickhouse_dsn))
    target = describe(settings.clickhouse_dsn)
    if applied:
        click.echo(f"applied {', '.join(applied)} to {target}")
    else:
        click.echo(f"{target} is up to date")


@cli.command()
@click.option("--kind", type=click.Choice(["noida", "tansu"]), default="noida", show_default=True)
@click.option("--port", type=int, default=9092, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, help="Kept; default: temporary.")
def broker(kind: str, port: int, data_dir: Path | None) -> None:
    """Run an embedded Kafka-protocol broker on 127.0.0.1 in the foreground (development)."""
    from modelmon.broker import EmbeddedBroker, run_foreground

    def ready(started: EmbeddedBroker) -> None:
        console.print(f"{kind} broker listening on [bold]{started.bootstrap}[/] (Ctrl-C stops it)")

    _setup_logging("info")
    run_foreground(kind, port, data_dir, on_ready=ready)


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
    """Validate model specs (default: MODELMON_MODELS_PATH)."""
    from modelmon.spec import SpecError, load_specs
    from streams.change import check_change_spec

    try:
        specs = load_specs(path or _settings().models_path)
        for model in specs.values():
            check_change_spec(model)  # detector settings: checked where the worker would refuse them
    except SpecError as error:
        _fail(str(error))
        return
    for model_id, model in specs.items():
        click.echo(
            f"ok  {model_id}: {model.task.value}, {len(model.features)} features, {len(model.alerts)} rules"
        )


@cli.group()
def reference() -> None:
    """Reference distributions for drift (docs/references.md)."""


@reference.command("load")
@click.argument("model")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--version", "model_version", default="1", show_default=True, help="Model version.")
@click.option("--sample-size", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--no-store", is_flag=True, help="Only publish to Kafka; do not write to ClickHouse.")
def reference_load(model: str, file: Path, model_version: str, sample_size: int, no_store: bool) -> None:
    """Profile FILE (CSV or Parquet) as the reference of MODEL; publish it and store it in ClickHouse."""
    from confluent_kafka import KafkaException

    from modelmon.admin import TopicAdminError
    from modelmon.references import ReferenceFileError, load_reference_file
    from modelmon.spec import SpecError, load_specs
    from sinks.clickhouse import ClickHouseError, describe
    from sinks.references import store_reference_at
    from streams.references import ReferencePublishError, publish_reference

    settings = _settings()
    _setup_logging("warning")
    try:
        specs = load_specs(settings.models_path)
        if model not in specs:
            _fail(f"unknown model {model!r} in {settings.models_path}; known: {', '.join(sorted(specs))}")
        loaded = load_reference_file(file, specs[model], sample_size=sample_size)
    except (SpecError, ReferenceFileError) as error:
        _fail(str(error))
        return
    click.echo(f"reference of {model} version {model_version} from {file}: {loaded.rows} rows")
    for name, feature in loaded.profile.items():
        column = loaded.columns[name]
        origin = f" (column {column})" if column != name else ""
        counts = f"{feature.count} present, {feature.missing} missing"
        click.echo(f"  {name:<24} {feature.kind:<12} {counts}{origin}")
    if loaded.ignored:
        click.echo(f"  ignored columns: {', '.join(loaded.ignored)}")
    topic, bootstrap, source = settings.topics.reference_profiles, settings.kafka_bootstrap, loaded.source
    try:
        sent = publish_reference(settings, model, model_version, loaded.profile, source)
    except (ReferencePublishError, TopicAdminError, KafkaException) as error:
        _fail(f"not published to {topic} on {bootstrap}: {error}")
    click.echo(f"published {sent} messages to {topic} on {bootstrap}")
    target = describe(settings.clickhouse_dsn)
    if no_store:
        click.echo(f"not stored in ClickHouse {target} (--no-store)")
        return
    try:
        rows = store_reference_at(settings.clickhouse_dsn, model, model_version, loaded.profile, source)
    except ClickHouseError as error:
        # E.g. an embedded chdb directory held by the running sink. Workers read the topic, so the
        # reference is in use already; the table only records it for dashboards.
        console.print(
            f"[yellow]warning:[/] not stored in ClickHouse {escape(target)}: {escape(str(error))}\n"
            "The reference is published to Kafka, which is what workers read. To store it too, run this "
            "command again while nothing else holds the ClickHouse directory (or against a server).",
            highlight=False,
            soft_wrap=True,
        )
        return
    click.echo(f"stored {rows} rows in ClickHouse {target} (table reference_profiles)")


@cli.command()
@click.option("--events", type=int, default=10_000, show_default=True, help="Predictions per model.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second (0 = max).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--labels/--no-labels", default=True, show_default=True, help="Also log ground truth.")
def produce(events: int, rate: float, seed: int, labels: bool) -> None:
    """Send synthetic traffic for every model spec through the SDK."""
    from modelmon.producer import produce_synthetic
    from modelmon.spec import load_specs

    settings = _settings()
    _setup_logging(settings.log_level)
    sent = produce_synthetic(
        settings, load_specs(settings.models_path), events, rate=rate, seed=seed, labels=labels
    )
    click.echo(f"sent {sent} predictions to {settings.kafka_bootstrap}")


@cli.command()
def status() -> None:
    """Show what is stored in ClickHouse: events per model, dead letters by reason."""
    from modelmon.demo import collect_summary, print_summary
    from sinks.clickhouse import connect

    print_summary(collect_summary(connect(_settings().clickhouse_dsn)), Console())


@cli.command()
@click.option(
    "--events", type=click.IntRange(min=30), default=2000, show_default=True, help="Predictions per model."
)
@click.option(
    "--windows", type=click.IntRange(min=12), default=30, show_default=True,
    help="One-minute event-time windows the run covers (the phases scale with it).",
)  # fmt: skip
@click.option(
    "--malformed", type=click.IntRange(min=0), default=50, show_default=True, help="Malformed messages."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the traffic, labels and drift.")
@click.option(
    "--rate", type=click.FloatRange(min=0), default=200.0, show_default=True,
    help="Predictions per second over all models (0 = as fast as possible).",
)  # fmt: skip
@click.option("--webhook", default=None, help="Also POST alerts and retrain requests (JSON) to this URL.")
@click.option(
    "--webhook-secret", envvar="MODELMON_DEMO_WEBHOOK_SECRET", default=None,
    help="Sign the webhook requests with HMAC-SHA256 (X-Modelmon-Signature) [MODELMON_DEMO_WEBHOOK_SECRET].",
)  # fmt: skip
@click.option("--broker", "broker_kind", type=click.Choice(["noida", "tansu"]), default="noida")
@click.option("--workdir", type=click.Path(path_type=Path), default=Path(".modelmon/demo"), show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object on stdout.")
def demo(
    events: int,
    windows: int,
    malformed: int,
    seed: int,
    rate: float,
    webhook: str | None,
    webhook_secret: str | None,
    broker_kind: str,
    workdir: Path,
    as_json: bool,
) -> None:
    """Run everything on this machine: broker, worker, sink, ClickHouse, and a scripted story of drift."""
    from pydantic import ValidationError

    from modelmon.demo import DemoConfig, run_demo
    from modelmon.settings import WebhookTarget

    if webhook_secret and not webhook:
        raise click.UsageError("--webhook-secret needs --webhook")
    if webhook:
        try:
            WebhookTarget(url=webhook)
        except ValidationError:
            raise click.BadParameter(
                "an http:// or https:// URL with a host", param_hint="--webhook"
            ) from None
    if events < windows:
        raise click.BadParameter(
            f"at least --windows ({windows}) predictions per model", param_hint="--events"
        )
    config = DemoConfig(
        events=events,
        windows=windows,
        malformed=malformed,
        seed=seed,
        rate=rate,
        broker=broker_kind,
        workdir=workdir,
        as_json=as_json,
        webhook=webhook,
        webhook_secret=webhook_secret,
    )
    sys.exit(run_demo(config))


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
        specs = load_specs(_settings().models_path)
    except SpecError as error:
        _fail(str(error))
        return
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
    from modelmon.spec import SpecError, load_specs

    try:
        result = push(
            connect(url, token=token, user=user, password=password), load_specs(_settings().models_path)
        )
    except (SpecError, ValueError, GrafanaException) as error:
        _fail(f"push to {url} failed: {error}")
        return
    click.echo(f"folder modelmon {'created' if result.folder_created else 'exists'}")
    for uid, path in result.dashboards.items():
        click.echo(f"saved {uid}  {url.rstrip('/')}{path}")
    if not result.datasource_found:
        console.print(
            "[yellow]warning:[/] no datasource with uid modelmon-clickhouse in Grafana", highlight=False
        )


@cli.command()
@click.option(
    "--model", "models", multiple=True, help="Model id (repeatable); default: every model with data."
)
@click.option("--since", default="1h", show_default=True, help="Time range ending now, e.g. 30m, 6h, 2d.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reports"), show_default=True)
def report(models: tuple[str, ...], since: str, out_dir: Path) -> None:
    """Render the key dashboard panels to PNG files and one self-contained HTML page."""
    from dashboards.report import models_with_data, write_report
    from modelmon.spec import SpecError, load_specs, parse_duration
    from sinks.clickhouse import connect

    settings = _settings()
    try:
        parse_duration(since)
        specs = load_specs(settings.models_path)
    except (SpecError, ValueError) as error:
        _fail(str(error))
        return
    client = connect(settings.clickhouse_dsn)
    chosen = list(models) or models_with_data(client, since)
    if not chosen:
        _fail(f"no model has metrics in the last {since}")
    click.echo(str(write_report(client, chosen, out_dir, since, specs=specs)))


def main() -> None:
    cli(prog_name="modelmon")


if __name__ == "__main__":
    main()
