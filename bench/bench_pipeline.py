"""The streaming pipeline's benchmark (issue #12): ceiling, worker throughput, latency, memory, idle CPU.

Usage (from the repository root)::

    .venv/bin/python bench/bench_pipeline.py            # 1,000,000 predictions + 200,000 labels, ~15 min
    .venv/bin/python bench/bench_pipeline.py --quick    # small sizes, ~3 min
    .venv/bin/python bench/bench_pipeline.py --help

One embedded broker (noida-db), ``modelmon worker`` subprocesses, the ClickHouse sink in this
process writing to an embedded chDB, the SDK logging from this process. Phases (bench/README.md,
section "Pipeline", has the definitions): (a) the consume ceiling, (b) one worker draining a
pre-filled backlog, (c) = (b)/(a), (d) two workers, (e) the SDK alone, (f) latency, (g) the worker's
memory after 1x and 4x the backlog, (h) an idle worker's CPU. Prints one table, the profile of (b),
``RESULT`` lines and the command to reproduce; writes JSON (``--json``). Exit status 1 if a phase failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline_processes import BENCH_DIR, PhaseFailed
from pipeline_report import machine, report

PHASES = "abcdefgh"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: 50k predictions over 5 minutes, 5-second latency windows, 20 s idle",
    )
    p.add_argument("--events", type=int, help="predictions in a backlog [1,000,000; --quick 50,000]")
    p.add_argument(
        "--labels-fraction", type=float, default=0.2, help="share of predictions with a label [0.2]"
    )
    p.add_argument(
        "--backlog-minutes",
        type=float,
        help="event times of a backlog: the last N minutes, i.e. N one-minute windows [50; --quick 5]",
    )
    p.add_argument("--skip", default="", help="phases to skip, comma-separated, e.g. d,g,h")
    p.add_argument("--partitions", type=int, default=4, help="partitions of the input topics [4]")
    p.add_argument(
        "--sdk-calls", type=int, default=100_000, help="(e): calls for the rate and for the timing [100,000]"
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=0.0,
        help="(f): events/s (predictions + labels) [0 = half of (b)]",
    )
    p.add_argument(
        "--latency-compress",
        type=float,
        help="(f): event time runs this many times faster than the clock [1 = real time; --quick 12]",
    )
    p.add_argument(
        "--latency-windows", type=int, help="(f): measured windows, after one warm-up [3; --quick 4]"
    )
    p.add_argument(
        "--latency-timeout",
        type=float,
        default=60.0,
        help="(f): seconds past the bound to wait for the last measured window [60]",
    )
    p.add_argument(
        "--memory-join-cap",
        type=int,
        help="(g): MODELMON_JOIN_MAX_PENDING for the memory phase [50,000; --quick 2,000]",
    )
    p.add_argument("--idle-seconds", type=float, help="(h): measuring time [60; --quick 20]")
    p.add_argument(
        "--no-tansu",
        dest="tansu",
        action="store_false",
        help="(h): do not measure the idle worker on Tansu too (a broker that holds empty fetches)",
    )
    p.add_argument("--no-profile", dest="profile", action="store_false", help="(b): do not run py-spy")
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of every worker, e.g. MODELMON_BATCH_SIZE=5000 (repeatable)",
    )
    p.add_argument(
        "--stall-seconds", type=float, help="fail a drain with no progress this long [60; --quick 30]"
    )
    p.add_argument(
        "--timeout", type=float, default=0.0, help="fail a drain after this long [max(600, msgs/500)]"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--workdir", type=Path, help="keep broker data, ClickHouse and logs here (default: temp, removed)"
    )
    p.add_argument(
        "--json",
        type=Path,
        default=BENCH_DIR / "results" / "pipeline.json",
        help="write results here [bench/results/pipeline.json]",
    )
    args = p.parse_args(argv)
    quick = args.quick
    args.events = args.events or (50_000 if quick else 1_000_000)
    args.backlog_minutes = args.backlog_minutes or (5.0 if quick else 50.0)
    args.latency_compress = args.latency_compress or (12.0 if quick else 1.0)
    args.latency_windows = args.latency_windows or (4 if quick else 3)
    args.memory_join_cap = args.memory_join_cap or (2_000 if quick else 50_000)
    args.idle_seconds = args.idle_seconds or (20.0 if quick else 60.0)
    args.stall_seconds = args.stall_seconds or (30.0 if quick else 60.0)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    if unknown := args.skip - set(PHASES):
        p.error(f"unknown phases in --skip: {', '.join(sorted(unknown))} (phases: {', '.join(PHASES)})")
    if bad := [item for item in args.worker_env if "=" not in item]:
        p.error(f"--worker-env takes NAME=VALUE, got {bad[0]!r}")
    if args.latency_compress < 1:
        p.error("--latency-compress must be >= 1")
    args.extra_env = dict(item.split("=", 1) for item in args.worker_env)
    return args


def backlog_join_cap(args: argparse.Namespace) -> int:
    """(b) and (d): a join cap per partition that holds the whole backlog, with 25% to spare.

    The backlog arrives in one burst before the workers start, so every prediction of it waits in the
    join state at once (80% never get a label); murmur2 spreads them a little unevenly. Under the
    default cap (250,000) a partition of the 1 M backlog can go over: its oldest waiting predictions
    are then evicted as ``label_missing``, as designed, and labels read after that cannot join.
    """
    return max(250_000, int(args.events / args.partitions * 1.25))


class Runner:
    """Runs phases, printing a failure as one message (no traceback) and recording it in the JSON."""

    def __init__(self, results: dict[str, Any], skip: set[str]) -> None:
        self.results, self.skip = results, skip

    def run(
        self, key: str, fn: Callable[[], dict[str, Any]], needs: str = "", fails: str = ""
    ) -> dict[str, Any] | None:
        """``fn()``'s result, or None if skipped (``--skip``, ``needs``) or failed (``fails``, raised)."""
        phases = self.results["phases"]
        if key in self.skip:
            phases[key] = {"status": "skipped", "reason": "--skip"}
            return None
        if fails:
            return self._failed(key, fails, time.monotonic())
        if needs:
            phases[key] = {"status": "skipped", "reason": needs}
            print(f"[{key}] skipped: {needs}", flush=True)
            return None
        started = time.monotonic()
        try:
            result = fn()
        except PhaseFailed as error:
            return self._failed(key, str(error), started)
        except Exception as error:
            self.results.setdefault("tracebacks", {})[key] = traceback.format_exc()
            return self._failed(key, f"{type(error).__name__}: {error}", started)
        phases[key] = {"status": "ok", "result": result, "seconds": time.monotonic() - started}
        return result

    def _failed(self, key: str, message: str, started: float) -> None:
        print(f"[{key}] FAILED after {time.monotonic() - started:.0f} s: {message}", flush=True)
        first = message.split("\n", 1)[0]
        self.results["phases"][key] = {"status": "failed", "reason": first, "detail": message}
        return None


def run(args: argparse.Namespace, command: str, workdir: Path) -> dict[str, Any]:
    from pipeline_context import Context
    from pipeline_drain import phase_a, phase_b, phase_d, phase_g
    from pipeline_live import phase_e, phase_f, phase_h
    from pipeline_sink import Sinks
    from pipeline_traffic import Traffic

    from modelmon.app.broker import EmbeddedBroker
    from sinks.clickhouse import connect
    from sinks.migrate import migrate

    results: dict[str, Any] = {
        "command": command,
        "machine": machine(),
        "phases": {},
        "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    }
    results["config"] = {
        k: sorted(v) if isinstance(v, set) else v
        for k, v in vars(args).items()
        if k not in ("json", "workdir")
    }
    runner = Runner(results, args.skip)
    print(f"modelmon pipeline bench at {results['machine']['git']}; work directory {workdir}", flush=True)
    with EmbeddedBroker("noida", data_dir=workdir / "broker") as broker:
        client = connect(f"chdb://{workdir / 'clickhouse'}")
        migrate(client)
        ctx = Context(
            args,
            workdir,
            broker.bootstrap,
            broker.pid or 0,
            Sinks(client),
            Traffic.generate(args.seed, args.labels_fraction),
        )
        try:
            runner.run("e", lambda: phase_e(ctx))
            runner.run("h", lambda: phase_h(ctx))  # first: on a fresh broker, before the others' topics
            b_backlog, no_backlog = None, ""
            if not {"a", "b"} <= args.skip:
                try:
                    b_backlog = ctx.backlog("b", join_max_pending=backlog_join_cap(args))
                except Exception as error:
                    no_backlog = f"filling the backlog failed: {type(error).__name__}: {error}"
            a = runner.run("a", lambda: phase_a(ctx, b_backlog), fails=no_backlog)
            b = runner.run("b", lambda: phase_b(ctx, b_backlog), fails=no_backlog)
            if b_backlog is not None:
                ctx.delete_topics(b_backlog.settings)
            if a and b:
                ratio = {
                    "ratio": b["events_per_s"] / a["messages_per_s"],
                    "cpu_ratio": b["events_per_cpu_s"] / a["messages_per_cpu_s"],
                    "a": a["messages_per_s"],
                    "b": b["events_per_s"],
                }
                runner.run("c", lambda: ratio)
            else:
                runner.run("c", dict, needs="needs (a) and (b)")
            runner.run("d", lambda: phase_d(ctx, ctx.backlog("d", join_max_pending=backlog_join_cap(args))))
            rate = args.latency_rate or (b["events_per_s"] / 2 if b else 0.0)
            runner.run(
                "f", lambda: phase_f(ctx, rate), needs="" if rate else "needs (b)'s rate or --latency-rate"
            )
            ctx.delete_topics(ctx.settings("f"))
            ctx.delete_topics(ctx.settings("d"))
            runner.run("g", lambda: phase_g(ctx))
            ctx.delete_topics(ctx.settings("g"))
        finally:
            ctx.sinks.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(
        [".venv/bin/python", "bench/bench_pipeline.py", *(sys.argv[1:] if argv is None else argv)]
    )
    started = time.monotonic()
    workdir = (
        args.workdir.resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="modelmon-bench-pipeline-"))
    )
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        results = run(args, command, workdir)
        if args.json:  # keep (b)'s raw stacks beside the JSON (speedscope, flamegraph.pl)
            profile = results["phases"].get("b", {}).get("result", {}).get("profile") or {}
            if profile.get("file") and Path(profile["file"]).exists():
                kept = args.json.with_name(args.json.stem + "-worker-profile.txt")
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(profile["file"], kept)
                profile["kept"] = str(kept)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        return 130
    except Exception as error:
        print(f"the bench could not run: {type(error).__name__}: {error}", flush=True)
        return 1
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    results["seconds"] = time.monotonic() - started
    results["machine"]["loadavg_end"] = os.getloadavg()
    print()
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))
        print(f"results: {args.json}")
    failed = [k for k, v in results["phases"].items() if v.get("status") == "failed"]
    inexact = [k for k in "bd" if results["phases"].get(k, {}).get("result", {}).get("exact") is False]
    return 1 if failed or inexact else 0


if __name__ == "__main__":
    sys.exit(main())
