"""``modelmon reference load``: profile a reference file, publish it to Kafka, store it in ClickHouse."""

from __future__ import annotations

from pathlib import Path

import click

from modelmon.app.cli.base import cli, fail, settings, setup_logging


@cli.group()
def reference() -> None:
    """Reference distributions for drift (docs/references.md)."""


@reference.command("load")
@click.argument("model")
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--version", "model_version", default="1", show_default=True, help="Model version.")
@click.option("--sample-size", type=click.IntRange(min=1), default=4096, show_default=True)
@click.option("--no-store", is_flag=True, help="Only publish to Kafka; do not write to ClickHouse.")
def reference_load(
    model: str, file: Path | None, model_version: str, sample_size: int, no_store: bool
) -> None:
    """Profile FILE (CSV or Parquet) as the reference of MODEL; publish it and store it in ClickHouse.

    Without FILE: the spec's reference.path (relative to the spec file).
    """
    from confluent_kafka import KafkaException

    from detectors.profiles.files import ReferenceFileError, load_reference_file
    from modelmon.admin import TopicAdminError
    from modelmon.app.cli.base import reference_file
    from modelmon.app.startup import wait_for_kafka
    from modelmon.spec import SpecError, load_specs_with_files
    from sinks.clickhouse import ClickHouseError, describe
    from sinks.references import store_reference_at
    from streams.references import ReferencePublishError, publish_reference

    config = settings()
    setup_logging("warning")
    try:
        specs = load_specs_with_files(config.models_path)
        if model not in specs:
            fail(f"unknown model {model!r} in {config.models_path}; known: {', '.join(sorted(specs))}")
        spec, origin = specs[model]
        if file is None:
            file = reference_file(spec, origin)
            if file is None:
                fail(
                    f"no FILE given and {origin} has no reference.path: "
                    f"run `modelmon reference load {model} FILE`, or set reference.path in the spec"
                )
            if not file.is_file():
                fail(f"{origin}: reference.path {spec.reference.path!r} is not a file: {file}")
        loaded = load_reference_file(file, spec, sample_size=sample_size)
    except (SpecError, ReferenceFileError) as error:
        fail(str(error))
    click.echo(f"reference of {model} version {model_version} from {file}: {loaded.rows} rows")
    for name, feature in loaded.profile.items():
        column = loaded.columns[name]
        renamed = f" (column {column})" if column != name else ""
        counts = f"{feature.count} present, {feature.missing} missing"
        click.echo(f"  {name:<24} {feature.kind:<12} {counts}{renamed}")
    if loaded.calibration_rows:
        rows = loaded.calibration_rows
        click.echo(f"  {'(calibration)':<24} {'scores':<12} {rows} labelled rows: performance is estimated")
    if loaded.ignored:
        click.echo(f"  ignored columns: {', '.join(loaded.ignored)}")
    topic, bootstrap, source = config.topics.reference_profiles, config.kafka_bootstrap, loaded.source
    wait_for_kafka(config)
    try:
        sent = publish_reference(config, model, model_version, loaded.profile, source)
    except (ReferencePublishError, TopicAdminError, KafkaException) as error:
        fail(f"not published to {topic} on {bootstrap}: {error}")
    click.echo(f"published {sent} messages to {topic} on {bootstrap}")
    target = describe(config.clickhouse_dsn)
    if no_store:
        click.echo(f"not stored in ClickHouse {target} (--no-store)")
        return
    try:
        rows = store_reference_at(config.clickhouse_dsn, model, model_version, loaded.profile, source)
    except ClickHouseError as error:
        # E.g. an embedded chdb directory held by the running sink, or a server that is down. Workers
        # read the topic, so the reference is in use already; the table records it for dashboards.
        fail(
            f"published to Kafka, but not stored in ClickHouse {target}: {error}\n"
            "Workers read the reference from Kafka, so it is in use. The running sink stores it when it "
            "reads the topic; or run this command again once ClickHouse is reachable (--no-store skips it).",
            code=1,
        )
    click.echo(f"stored {rows} rows in ClickHouse {target} (table reference_profiles)")
