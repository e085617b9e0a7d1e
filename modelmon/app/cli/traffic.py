"""Commands that make traffic: ``produce`` (synthetic predictions) and ``demo`` (the whole story)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from modelmon.app.cli.base import cli, settings, setup_logging


@cli.command()
@click.option("--events", type=int, default=10_000, show_default=True, help="Predictions per model.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second (0 = max).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--labels/--no-labels", default=True, show_default=True, help="Also log ground truth.")
def produce(events: int, rate: float, seed: int, labels: bool) -> None:
    """Send synthetic traffic for every model spec through the SDK."""
    from modelmon.app.producer import produce_synthetic
    from modelmon.app.startup import wait_for_kafka
    from modelmon.spec import load_specs

    config = settings()
    setup_logging(config.log_level)
    specs = load_specs(config.models_path)
    wait_for_kafka(config)
    sent = produce_synthetic(config, specs, events, rate=rate, seed=seed, labels=labels)
    click.echo(f"sent {sent} predictions to {config.kafka_bootstrap}")


@cli.command()
@click.option(
    "--events", type=click.IntRange(min=30), default=2000, show_default=True, help="Predictions per model."
)
@click.option(
    "--windows",
    type=click.IntRange(min=12),
    default=30,
    show_default=True,
    help="One-minute event-time windows the run covers (the phases scale with it).",
)
@click.option(
    "--malformed", type=click.IntRange(min=0), default=50, show_default=True, help="Malformed messages."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the traffic, labels and drift.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0),
    default=200.0,
    show_default=True,
    help="Predictions per second over all models (0 = as fast as possible).",
)
@click.option("--webhook", default=None, help="Also POST alerts and retrain requests (JSON) to this URL.")
@click.option(
    "--webhook-secret",
    envvar="MODELMON_DEMO_WEBHOOK_SECRET",
    default=None,
    help="Sign the webhook requests with HMAC-SHA256 (X-Modelmon-Signature) [MODELMON_DEMO_WEBHOOK_SECRET].",
)
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

    from modelmon.app.demo import DemoConfig, run_demo
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
