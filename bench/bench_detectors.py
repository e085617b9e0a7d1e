"""Throughput of modelmon's detectors against whylogs and Evidently on one generated data set (issue #3).

Usage (from the repository root)::

    bash bench/setup_peers.sh                       # once: bench/.venv-whylogs, bench/.venv-evidently
    .venv/bin/python bench/bench_detectors.py       # full run: 50k reference, 100k current rows
    .venv/bin/python bench/bench_detectors.py --quick --no-peers   # a few seconds, modelmon only

Every tool gets the same rows, generated once from ``--seed`` into ``bench/data/`` (see
``bench/common.py``). Each peer runs in its own venv through ``bench/peers/*.py``, which times only
the work (never the import) and reports JSON on stdout. The tools run in ``--repeat`` interleaved
rounds (modelmon, whylogs, Evidently, modelmon, ...) so a load spike hits all of them alike; each
figure is a tool's fastest round. See bench/README.md, section "Detectors".
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from modelmon_stream import ModelmonBench

BENCH_DIR = common.BENCH_DIR
REPO_DIR = BENCH_DIR.parent


@dataclass(frozen=True)
class Peer:
    name: str
    script: str
    goal: float  # issue #3: modelmon's rows/s must be at least this many times the peer's
    compare_to: str  # the modelmon figure doing the same work as the peer: "stream" or "end-to-end"

    @property
    def venv(self) -> Path:
        return BENCH_DIR / f".venv-{self.name}"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


# whylogs only profiles the current rows (no reference, no drift), so it is compared with the
# streaming figure, which does that and more. Evidently reads both raw splits on every run, so it
# is compared with the end-to-end figure, which also builds the reference profile from raw rows.
PEERS = (
    Peer("whylogs", "whylogs_profile.py", goal=3.0, compare_to="stream"),
    Peer("evidently", "evidently_drift.py", goal=20.0, compare_to="end-to-end"),
)
# Neither peer phones home during a run (no network here, and a telemetry thread costs CPU).
PEER_ENV = {"WHYLOGS_NO_ANALYTICS": "True", "DO_NOT_TRACK": "1", "ITERATIVE_DO_NOT_TRACK": "1"}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-rows", type=int, default=50_000)
    p.add_argument("--current-rows", type=int, default=100_000)
    p.add_argument("--numerical", type=int, default=16, help="numerical columns")
    p.add_argument("--categorical", type=int, default=4, help="categorical columns")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-rows", type=int, default=5_000, help="rows per update_batch call")
    p.add_argument("--partitions", type=int, default=4, help="partial aggregates merged per window")
    p.add_argument("--window-rows", type=int, default=20_000, help="rows per window (drift on close)")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; each tool's fastest counts")
    p.add_argument("--quick", action="store_true", help="smoke run: 5k/10k rows, 1k batches, 1 round")
    p.add_argument("--no-peers", action="store_true", help="measure modelmon only")
    p.add_argument("--peers", default=",".join(peer.name for peer in PEERS), help="comma-separated peers")
    p.add_argument("--peer-timeout", type=float, default=1800.0, help="seconds before a peer run is dropped")
    p.add_argument("--data-root", type=Path, default=common.DEFAULT_DATA_ROOT, help="where data sets live")
    p.add_argument("--json", type=Path, help="also write every record to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.reference_rows, args.current_rows = 5_000, 10_000
        args.batch_rows, args.window_rows, args.repeat = 1_000, 2_000, 1
    for name in ("reference_rows", "current_rows", "batch_rows", "partitions", "window_rows", "repeat"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    known = [peer.name for peer in PEERS]
    args.peer_names = [] if args.no_peers else [name for name in args.peers.split(",") if name]
    if unknown := sorted(set(args.peer_names) - set(known)):
        p.error(f"unknown peer(s) {unknown}; valid: {', '.join(known)}")
    return args


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": cores,
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def run_peer(peer: Peer, data_dir: Path, timeout: float) -> tuple[dict | None, str]:
    """One timed run of the peer in its venv: its JSON record, or ``None`` and why not."""
    if not peer.python.exists():
        venv = peer.venv.relative_to(REPO_DIR)
        return None, f"{venv} is missing; create it with `bash bench/setup_peers.sh`"
    cmd = [str(peer.python), str(BENCH_DIR / "peers" / peer.script), "--data", str(data_dir), "--repeat", "1"]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **PEER_ENV}, check=False
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = "\n    ".join(proc.stderr.strip().splitlines()[-8:])
        return None, f"exit code {proc.returncode}; stderr ends:\n    {tail}"
    try:
        return json.loads(lines[-1]), ""
    except json.JSONDecodeError:
        return None, f"no JSON on its last stdout line: {lines[-1][:200]!r}"


def combine_rounds(records: list[dict]) -> dict:
    """One record from a peer's single-run rounds: the fastest round, with every round's seconds."""
    best = min(records, key=lambda r: r["seconds"])
    return {
        **best,
        "runs_seconds": [r["seconds"] for r in records],
        "runs_cpu_seconds": [r["cpu_seconds"] for r in records],
        "import_seconds": min(r.get("import_seconds", float("nan")) for r in records),
    }


def fmt_int(x: float) -> str:
    return f"{x:,.0f}"


def markdown_table(records: list[dict], ratios: dict[str, str]) -> list[str]:
    header = ("tool", "work", "rows", "seconds", "rows/s", "modelmon ÷ peer", "CPU s")
    rows = [
        (
            f"{r['tool']} {r['version']}",
            r["work"],
            fmt_int(r["rows"]),
            f"{r['seconds']:.3f}",
            fmt_int(r["rows_per_s"]),
            ratios.get(r["tool"], ""),
            f"{r['cpu_seconds']:.3f}",
        )
        for r in records
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    numeric = {2, 3, 4, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        padded = [
            cell.rjust(width) if i in numeric else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + "|"
    return [line(header), rule, *(line(row) for row in rows)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    spec = common.DataSpec(
        reference_rows=args.reference_rows,
        current_rows=args.current_rows,
        numerical=args.numerical,
        categorical=args.categorical,
        seed=args.seed,
    )
    data_dir = common.ensure_data(spec, args.data_root)
    data = common.load(data_dir)
    host = machine()
    command = f"cd {shlex.quote(str(REPO_DIR))} && " + shlex.join(
        [".venv/bin/python", "bench/bench_detectors.py", *argv]
    )
    shown_dir = data_dir.relative_to(REPO_DIR) if data_dir.is_relative_to(REPO_DIR) else data_dir
    started = dt.datetime.now().astimezone()
    print(f"# modelmon detectors bench, {started.isoformat(timespec='seconds')}")
    print(f"machine: {host['cores']} cores, {host['cpu']}, {host['os']}, Python {host['python']}")
    print(
        f"data: {shown_dir}: reference {spec.reference_rows:,} rows, current {spec.current_rows:,} rows, "
        f"{spec.numerical} numerical + {spec.categorical} categorical columns, seed {spec.seed}; "
        f"drifted by construction: {', '.join(data.meta['drifted_columns'])}"
    )
    print(f"reproduce: {command}")
    print("timed: the work only; imports, data loading, DataFrame building and a warm-up run are not timed.")
    print(f"rounds: {args.repeat}, interleaved across tools; each figure is the tool's fastest round.")
    print("seconds and rows/s are wall time; CPU s is that run's process CPU time (all threads).")
    load_before = load_average()
    if load_before > 0.5 * host["cores"]:
        print(
            f"WARNING: load average {load_before:.2f} on {host['cores']} cores: "
            "other work is running, figures are noisy"
        )
    print(flush=True)

    peers = [peer for peer in PEERS if peer.name in args.peer_names]
    modelmon = ModelmonBench(
        data, batch_rows=args.batch_rows, partitions=args.partitions, window_rows=args.window_rows
    )
    peer_rounds: dict[str, list[dict]] = {peer.name: [] for peer in peers}
    skipped: dict[str, str] = {}
    for round_ in range(1, args.repeat + 1):
        modelmon.run_once()
        print(
            f"round {round_}: modelmon {modelmon.stream_runs[-1].seconds:.3f} s "
            f"(with PSI and KS {modelmon.extra_runs[-1].seconds:.3f} s)",
            end="",
            flush=True,
        )
        for peer in peers:
            if peer.name in skipped:
                continue
            record, why_not = run_peer(peer, data_dir, args.peer_timeout)
            if record is None:
                skipped[peer.name] = why_not
                print(f", {peer.name} skipped", end="", flush=True)
                continue
            peer_rounds[peer.name].append(record)
            print(f", {peer.name} {record['seconds']:.3f} s", end="", flush=True)
        print()
    load_after = load_average()

    stream, end_to_end, stream_extra, end_to_end_extra = modelmon.records()
    print(f"\nmodelmon: {fmt_int(stream['rows_per_s'])} rows/s streaming ({modelmon.details()})")
    for name, why_not in skipped.items():
        print(f"{name}: skipped: {why_not}")

    records = [stream, end_to_end, stream_extra, end_to_end_extra]
    ratios: dict[str, str] = {}
    verdicts: list[str] = []
    ours = {"stream": stream, "end-to-end": end_to_end}
    heavier = {"stream": stream_extra, "end-to-end": end_to_end_extra}
    for peer in peers:
        if not peer_rounds[peer.name]:
            continue
        record = combine_rounds(peer_rounds[peer.name])
        records.append(record)
        ratio = ours[peer.compare_to]["rows_per_s"] / record["rows_per_s"]
        other_name = "end-to-end" if peer.compare_to == "stream" else "stream"
        other = ours[other_name]["rows_per_s"] / record["rows_per_s"]
        ratios[peer.name] = f"{ratio:.1f}x ({peer.compare_to})"
        verdicts.append(
            f"goal ≥ {peer.goal:g}x {peer.name}: {'met' if ratio >= peer.goal else 'NOT met'}, "
            f"{ratio:.1f}x against modelmon {peer.compare_to} ({other:.1f}x against {other_name}); "
            f"importing {peer.name} ({record['import_seconds']:.2f} s) is not timed; "
            f"{heavier[peer.compare_to]['rows_per_s'] / record['rows_per_s']:.1f}x with PSI and KS on top"
        )
    print()
    print("\n".join(markdown_table(records, ratios)))
    print()
    for verdict in verdicts:
        print(verdict)
    print(f"load average: {load_before:.2f} before, {load_after:.2f} after")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "started": started.isoformat(timespec="seconds"),
            "machine": host,
            "load_average": [load_before, load_after],
            "command": command,
            "spec": data.meta["spec"],
            "records": records,
            "skipped": skipped,
        }
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
