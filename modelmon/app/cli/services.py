"""Commands that run a service in the foreground: ``worker``, ``sink``, ``migrate``, ``broker``."""

from __future__ import annotations

from pathlib import Path

import click

from modelmon.app.cli.base import cli, console, fail, settings, setup_logging


@cli.command()
@click.option("--with-sink", is_flag=True, help="Also run the ClickHouse sink in this process.")
def worker(with_sink: bool) -> None:
    """Run a stream worker (faust): validate, join labels, aggregate windows, publish metrics, alert."""
    from modelmon.app.startup import wait_for_kafka
    from modelmon.spec import SpecError
    from streams.run import run_worker

    config = settings()
    setup_logging(config.log_level)
    try:
        if with_sink:
            from modelmon.app.wiring import migrated_client, start_sink_thread

            client = migrated_client(config)  # ClickHouse, then the broker: the sink starts once both answer
            wait_for_kafka(config)
            sink = start_sink_thread(config, client)
            run_worker(config, on_exit=sink.stop)
        else:
            wait_for_kafka(config)
            run_worker(config)
    except SpecError as error:
        fail(str(error))


@cli.command()
def sink() -> None:
    """Run the ClickHouse sink: insert metrics, alerts, retrain requests and dead letters."""
    import signal

    from modelmon.app.startup import wait_for_kafka
    from modelmon.app.wiring import clickhouse_sink

    config = settings()
    setup_logging(config.log_level)
    runner = clickhouse_sink(config)  # retries an unreachable ClickHouse server for MODELMON_STARTUP_TIMEOUT
    wait_for_kafka(config)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: runner.stop())
    runner.run()


@cli.command("migrate")
def migrate_command() -> None:
    """Apply ClickHouse schema migrations (idempotent)."""
    from sinks.clickhouse import connect, describe
    from sinks.migrate import migrate

    config = settings()
    applied = migrate(connect(config.clickhouse_dsn))
    target = describe(config.clickhouse_dsn)
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
    from modelmon.app.broker import EmbeddedBroker
    from modelmon.app.broker_modes import run_foreground
    from modelmon.app.broker_process import port_in_use

    if port and port_in_use(port):
        fail(f"port {port} on 127.0.0.1 is already in use (a broker running already?): stop what listens "
             "there, or choose another port with --port", code=1)  # fmt: skip

    def ready(started: EmbeddedBroker) -> None:
        console.print(f"{kind} broker listening on [bold]{started.bootstrap}[/] (Ctrl-C stops it)")

    setup_logging("info")
    run_foreground(kind, port, data_dir, on_ready=ready)
