"""The bench's report: the (a)..(h) table, the profile, RESULT lines, machine, versions and commit."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline_processes import REPO_DIR

VERSIONED = ("confluent-kafka", "faust-streaming", "orjson", "msgspec", "numpy", "chdb", "noida-db", "py-spy")
TITLES = {
    "a": "ceiling, confluent-kafka consume(5000) + orjson.loads",
    "b": "one worker drains the backlog",
    "c": "(b) / (a)",
    "d": "two workers drain the same-size backlog",
    "e": "SDK alone, log_prediction",
    "f": "latency, logged -> window's final `events` row",
    "g": "worker RSS, 1x and 4x the backlog",
    "h": "idle worker (one model, no traffic)",
}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    with contextlib.suppress(ImportError):
        import confluent_kafka

        out["librdkafka"] = confluent_kafka.libversion()[0]
    return out


def git_revision() -> str:
    """``git rev-parse --short HEAD``, plus "+dirty" when tracked files differ from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "loadavg_start": os.getloadavg(),
        "git": git_revision(),
        "versions": versions(),
    }


def table(rows: list[tuple[str, ...]], header: tuple[str, ...], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in pairs]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([fmt(header), rule + "|", *(fmt(r) for r in rows)])


def _figures(key: str, r: dict[str, Any]) -> tuple[str, str]:
    """(headline figure, details) of a measured phase."""
    if key == "a":
        return f"{r['messages_per_s']:,.0f} msg/s", (
            f"{r['messages']:,} messages in {r['seconds']:.2f} s; CPU {r['cpu_s']:.2f} s = "
            f"{r['messages_per_cpu_s']:,.0f} msg/CPU-s"
        )
    if key == "b":
        return f"{r['events_per_s']:,.0f} events/s", (
            f"{r['events']:,} events ({r['predictions']:,} predictions + {r['labels']:,} labels) in "
            f"{r['seconds']:.1f} s, counts {'exact' if r['exact'] else 'NOT EXACT'}; worker CPU "
            f"{r['worker_cpu_s']:.1f} s = {r['events_per_cpu_s']:,.0f} events/CPU-s; drift in "
            f"{r['drift_windows']}/{r['windows']} windows; RSS {r['rss_mb']:,.0f} MB"
        )
    if key == "c":
        return f"{r['ratio']:.2f}", (
            f"{r['b']:,.0f} events/s / {r['a']:,.0f} msg/s; per CPU-second: {r['cpu_ratio']:.2f}"
        )
    if key == "d":
        return f"{r['events_per_s']:,.0f} events/s", (
            f"{r['events']:,} events in {r['seconds']:.1f} s from the first assignment "
            f"({r['events_per_s_from_both']:,.0f}/s from the second's, {r['second_worker_after_s']:.1f} s "
            f"later), counts {'exact' if r['exact'] else 'NOT EXACT'}; CPU {r['workers_cpu_s']:.1f} s = "
            f"{r['events_per_cpu_s']:,.0f} events/CPU-s"
        )
    if key == "e":
        return f"{r['events_per_s']:,.0f} events/s", (
            f"{r['calls']:,} calls + flush; per call median {r['median_us']:.1f} µs, p99 {r['p99_us']:.1f} µs"
        )
    if key == "f":
        return f"p50 {r['p50_s']:.1f} s, p99 {r['p99_s']:.1f} s", (
            f"bound {r['bound_s']:g} s = window {r['window_wall_s']:g} + grace {r['grace_s']:g} + 5: "
            f"{'met' if r['met'] else 'NOT met'} (p99 = {r['p99_s'] / r['bound_s']:.0%} of it); after a "
            f"window's last event: median {r['tail_p50_s']:.1f} s, max {r['tail_max_s']:.1f} s; "
            f"{r['windows']} windows at {r['achieved_rate']:,.0f} events/s; {r['event_time']}"
        )
    if key == "g":
        return f"{r['rss_mb_1']:,.0f} -> {r['rss_mb_4']:,.0f} MB", (
            f"after {r['predictions_1']:,} and {r['predictions_4']:,} predictions (+20% labels; "
            f"{r['windows_1']} and {r['windows_4']} windows): "
            f"{r['growth_mb']:+,.0f} MB; MODELMON_JOIN_MAX_PENDING={r['join_max_pending']:,} per partition "
            f"x {r['partitions']}; events in ClickHouse {'exact' if r['exact_events'] else 'NOT EXACT'}"
        )

    def idle(m: dict[str, Any]) -> str:
        top = ", ".join(f"{name} {pct:.0f}%" for name, pct in list(m["worker_threads_pct"].items())[:3])
        return (
            f"{m.get('broker', 'noida-db')}: worker {m['worker_pct']:.1f}%, broker {m['broker_pct']:.1f}% "
            f"of a core over {m['seconds']:.0f} s (busiest threads: {top})"
        )

    figure = f"worker {r['worker_pct']:.1f}% of a core"
    if "tansu" in r:
        figure += f" (Tansu: {r['tansu']['worker_pct']:.1f}%)"
    details = idle(r) + (f"; {idle(r['tansu'])}" if "tansu" in r else "") + "; no sink running"
    return figure, details


def report(results: dict[str, Any]) -> str:
    phases, out = results["phases"], []
    rows = []
    for key, title in TITLES.items():
        entry = phases.get(key, {"status": "skipped"})
        if entry.get("status") == "ok":
            figure, details = _figures(key, entry["result"])
        else:
            figure, details = entry.get("status", "skipped").upper(), entry.get("reason", "")
        rows.append((f"({key})", title, figure, details))
    out.append(table(rows, ("", "measurement", "result", "details"), {2}))
    profile = phases.get("b", {}).get("result", {}).get("profile") or {}
    if profile.get("threads"):
        out.append("")
        out.append(
            f"Profile of (b): py-spy --threads --nonblocking, {profile['seconds']} s at {profile['rate']} Hz "
            f"({profile['samples']:,} samples; raw stacks: {profile.get('kept', profile.get('file'))})"
        )
        out.append(
            table(
                [(name, f"{n:,}", f"{100 * busy:.0f}%") for name, n, busy in profile["threads"][:8]],
                ("worker thread", "samples", "busy"),
                {1, 2},
            )
        )
        for group, data in sorted(profile["groups"].items()):
            out.append("")
            rows2 = [(name, f"{100 * share:.1f}%") for name, share in data["inclusive"]]
            out.append(
                table(rows2, (f"{group}: top frames, inclusive ({data['samples']:,} samples)", "share"), {1})
            )
    elif profile.get("error"):
        out.append(f"\nprofile of (b) failed: {profile['error']}")
    m = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["loadavg_start"])
    load_end = ", ".join(f"{x:.1f}" for x in m.get("loadavg_end", ()))
    out.append("")
    out.append(
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), Linux {m['kernel']}; load average {load} at the start, "
        f"{load_end} at the end; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    )
    out.append(f"Commit: {m['git']}; started {results['started']}, took {results['seconds']:.0f} s")
    out.append("")
    for key, title in TITLES.items():
        entry = phases.get(key, {"status": "skipped"})
        if entry.get("status") == "ok":
            figure, details = _figures(key, entry["result"])
            out.append(f"RESULT {key} {title}: {figure}; {details}")
        else:
            out.append(
                f"RESULT {key} {title}: {entry.get('status', 'skipped').upper()} {entry.get('reason', '')}"
            )
    out.append(f"Reproduce: {results['command']}")
    return "\n".join(out)
