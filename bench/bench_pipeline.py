"""End-to-end throughput and latency of the streaming pipeline, with a profile of the worker (issue #4).

Usage (from the repository root)::

    .venv/bin/pip install py-spy                      # once, for the worker profile (optional)
    .venv/bin/python bench/bench_pipeline.py          # 200k events, 10-15 minutes on 2 cores
    .venv/bin/python bench/bench_pipeline.py --quick  # 20k events, 2-3 minutes
    .venv/bin/python bench/bench_pipeline.py --help

One embedded broker (noida-db), one ``modelmon worker`` subprocess, the ClickHouse sink in this
process writing to an embedded chDB, and the SDK (``MonitorClient``) producing from this process.
The model is a binary classifier with 20 features (16 numerical, 4 categorical); a fraction of the
predictions get a label right after the prediction.

Phases (see bench/README.md, section "Pipeline", for the definitions):

1. per-event costs of the hot-path steps, in process (CPU time);
2. references, without the worker: the SDK's produce rate; consume-only rates of the same messages
   with confluent-kafka, with a no-op faust agent and with a faust agent that validates; the same
   predictions packed 100 per message, validated per message by a faust agent;
3. throughput: the worker is started and warmed up, then N events are produced as fast as the SDK
   goes; events/s = N / (first produce -> the insert after which ClickHouse holds all N). The
   worker is profiled with py-spy meanwhile (``--no-profile`` to skip);
4. latency: events produced at a fixed rate in a timed pattern of windows; per window, the time from
   its last event being logged to the insert of its ``events`` row with the final count.

Prints tables, ``RESULT`` lines and the command to reproduce; writes ``bench/results/pipeline.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_micro import microbench
from pipeline_phases import Results, recording_writer_class, run_latency, run_throughput, warm_up
from pipeline_processes import BENCH_DIR, Child, python_module, worker_env
from pipeline_profile import EVENT_LOOP as EVENT_LOOP
from pipeline_profile import analyse_profile as analyse_profile
from pipeline_reference import floor_main, run_references
from pipeline_report import machine, report, versions
from pipeline_traffic import (
    LATENCY_MODEL,
    N_CATEGORICAL,
    N_NUMERICAL,
    THROUGHPUT_MODEL,
    WARMUP_EVENTS,
    WARMUP_MODEL,
    Traffic,
    write_spec,
)

from modelmon.settings import Settings


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--events", type=int, default=None, help="events in the throughput run [200000; --quick 20000]"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small run: 20k events, short latency phase, short profile"
    )
    parser.add_argument(
        "--label-fraction", type=float, default=0.2, help="share of predictions that get a label"
    )
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the input topics")
    parser.add_argument(
        "--reference-events",
        type=int,
        default=None,
        help="events for the produce/consume reference points [= --events, at most 100000]",
    )
    parser.add_argument(
        "--floors",
        default="noop,validate,packed",
        help="faust reference readers to run (noop, validate, packed), comma-separated; '' for none",
    )
    parser.add_argument("--pack", type=int, default=100, help="events per message for the 'packed' reader")
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the worker and faust readers on uvloop (pip install uvloop)",
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the produce/consume reference points"
    )
    parser.add_argument(
        "--no-micro", action="store_true", help="skip the in-process per-event microbenchmarks"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip the latency phase")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="events/s in the latency phase [0 = half the measured throughput]",
    )
    parser.add_argument(
        "--latency-seconds",
        type=float,
        default=None,
        help="measured part of the latency phase [60; --quick 10]",
    )
    parser.add_argument(
        "--windows-per-second", type=float, default=0.5, help="windows produced per wall-clock second"
    )
    parser.add_argument(
        "--latency-timeout",
        type=float,
        default=None,
        help="extra seconds for measured windows to land [2 chunk rotations + 60]",
    )
    parser.add_argument(
        "--no-profile", dest="profile", action="store_false", help="do not run py-spy on the worker"
    )
    parser.add_argument(
        "--profile-seconds", type=float, default=None, help="py-spy sampling time [30; --quick 4]"
    )
    parser.add_argument(
        "--profile-delay",
        type=float,
        default=None,
        help="start py-spy this long after produce begins [5; --quick 1]",
    )
    parser.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the worker and faust readers, e.g. STREAM_BUFFER_MAXSIZE=16384 "
        "or MODELMON_BATCH_SIZE=5000 (repeatable)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="seconds to wait for the throughput run [max(300, events/200)]",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep broker, ClickHouse and logs here (default: a temp dir, removed)",
    )
    parser.add_argument(
        "--json", type=Path, default=BENCH_DIR / "results" / "pipeline.json", help="write results here"
    )
    parser.add_argument("--floor", help=argparse.SUPPRESS)
    parser.add_argument("--floor-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor-expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 20_000 if args.quick else 200_000
    if args.reference_events is None:
        args.reference_events = min(args.events, 100_000)
    if args.latency_seconds is None:
        args.latency_seconds = 10.0 if args.quick else 60.0
    if args.profile_seconds is None:
        args.profile_seconds = 4.0 if args.quick else 30.0
    if args.profile_delay is None:
        args.profile_delay = 1.0 if args.quick else 5.0
    args.floors = [f for f in args.floors.split(",") if f]
    if unknown := set(args.floors) - {"noop", "validate", "packed"}:
        parser.error(f"unknown --floors {sorted(unknown)}; valid: noop, validate, packed")
    args.extra_env = dict(item.split("=", 1) for item in args.worker_env)
    prefix = "MODELMON_"
    args.settings_overrides = {
        k[len(prefix) :].lower(): v for k, v in args.extra_env.items() if k.startswith(prefix)
    }
    return args


@contextlib.contextmanager
def workdir_for(args: argparse.Namespace) -> Iterator[Path]:
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        yield args.workdir.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="modelmon-bench-pipeline-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor:
        floor_main(args.floor, args.floor_out, args.floor_expected)
        return 0
    from modelmon.broker import EmbeddedBroker
    from sinks.clickhouse import connect
    from sinks.consumer import ClickHouseSink
    from sinks.migrate import migrate
    from streams.run import prepare_topics

    command = shlex.join(
        [".venv/bin/python", "bench/bench_pipeline.py", *(argv if argv is not None else sys.argv[1:])]
    )
    results = Results()
    results.machine = {
        **machine(),
        "versions": versions(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    traffic = Traffic.generate(args.seed, args.label_fraction)
    with workdir_for(args) as workdir:
        args.workdir_path = workdir
        models = workdir / "models"
        for model_id in (THROUGHPUT_MODEL, LATENCY_MODEL, WARMUP_MODEL):
            write_spec(models, model_id)
        if not args.no_micro:
            print("[micro] per-event costs in this process", flush=True)
            results.micro = microbench(traffic, models)
        with EmbeddedBroker("noida", data_dir=workdir / "broker") as broker:
            args.broker_pid = broker.pid or 0
            settings = Settings(
                kafka_bootstrap=broker.bootstrap,
                topic_prefix="bench.",
                app_id="bench-pipeline",
                models_path=models,
                worker_data_dir=workdir / "worker",
                clickhouse_dsn=f"chdb://{workdir / 'clickhouse'}",
                topic_partitions=args.partitions,
                # Windows close by their grace period, as under steady real-time traffic; see run_latency.
                allowed_lateness_seconds=86_400,
                # The latency phase compresses event time: windows run hours ahead of the clock.
                max_future_skew="30d",
                _env_file=None,  # type: ignore[call-arg]
                **args.settings_overrides,
            )
            results.config = {
                "events": args.events,
                "label_fraction": args.label_fraction,
                "partitions": args.partitions,
                "features": f"{N_NUMERICAL} numerical + {N_CATEGORICAL} categorical",
                "worker_env": args.extra_env,
                "batch_size": settings.batch_size,
                "batch_within": settings.batch_within,
                "chunk_size": settings.chunk_size,
                "window_seconds": settings.window_seconds,
                "grace_seconds": settings.window_grace_seconds,
                "idle_flush_seconds": settings.idle_flush_seconds,
                "sink_flush_seconds": settings.sink_flush_seconds,
                "command": command,
            }
            if not args.no_reference:
                run_references(settings, traffic, workdir, args, results)
            prepare_topics(settings)
            client = connect(settings.clickhouse_dsn)
            migrate(client)
            writer = recording_writer_class()(client)
            sink = ClickHouseSink(settings, writer)
            sink.start_thread()
            worker = Child(
                [*python_module("modelmon", args.uvloop), "worker"],
                worker_env(settings, args.extra_env),
                workdir / "worker.log",
            )
            try:
                if not worker.wait_log("[^Worker]: Ready", 120):
                    raise RuntimeError(f"the worker did not start:\n{worker.log_tail()}")
                print(
                    f"[warm-up] worker pid {worker.pid} ready; {WARMUP_EVENTS} events through the pipeline",
                    flush=True,
                )
                warm_up(settings, traffic, writer, worker)
                run_throughput(settings, traffic, writer, worker, args, results)
                if not args.no_latency:
                    run_latency(settings, traffic, writer, worker, args, results)
            finally:
                worker.stop()
                sink.stop()
                if args.workdir is not None:
                    print(f"worker log: {worker.log_path}")
    text = report(results, command)
    print()
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: v for k, v in results.__dict__.items()}
        args.json.write_text(json.dumps(payload, indent=2, default=str))
        print(f"results: {args.json}")
    ok = results.throughput.get("complete", False) and (
        args.no_latency or results.latency.get("landed_windows") == results.latency.get("measured_windows")
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
