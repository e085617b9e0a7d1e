"""The bench's report: tables, RESULT lines, and the machine and versions it ran on."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline_phases import Results
from pipeline_processes import REPO_DIR

VERSIONED = (
    "faust-streaming",
    "aiokafka",
    "confluent-kafka",
    "pydantic",
    "orjson",
    "numpy",
    "chdb",
    "noida-db",
    "py-spy",
)


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_revision() -> str:
    """The checked-out commit, with "+dirty" if the work tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
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
        "cpus": os.cpu_count(), "cpu": model, "kernel": platform.release(), "loadavg": os.getloadavg(),
        "git": git_revision(),
    }  # fmt: skip


def table(rows: list[tuple[str, ...]], header: tuple[str, ...], right: set[int]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = (
        "|"
        + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths))
        + "|"
    )
    return "\n".join([fmt(header), rule, *(fmt(r) for r in rows)])


def report(results: Results, command: str) -> str:
    ref, thr, lat = results.reference, results.throughput, results.latency
    rows: list[tuple[str, ...]] = []
    if "sdk" in ref:
        s = ref["sdk"]
        rows.append(
            (
                "SDK produce only (no worker)",
                f"{s['events']:,} ev",
                f"{s['events_per_s']:,.0f} ev/s",
                f"{s['messages'] / s['seconds']:,.0f} msg/s",
                "MonitorClient.log_prediction/log_ground_truth + flush",
            )
        )
    if "confluent" in ref:
        c = ref["confluent"]
        rows.append(
            (
                "consume only: confluent-kafka",
                f"{c['messages']:,} msg",
                "",
                f"{c['messages_per_s']:,.0f} msg/s",
                "consume(5000), no parsing",
            )
        )
    for mode, note in (
        ("noop", "stream.events(), nothing per message"),
        ("validate", "stream.events() + parse_event + check_against_spec"),
    ):
        if f"faust-{mode}" in ref:
            f = ref[f"faust-{mode}"]
            rows.append(
                (
                    f"consume only: faust agent, {mode}",
                    f"{f['messages']:,} msg",
                    "",
                    f"{f['messages_per_s']:,.0f} msg/s",
                    note,
                )
            )
    if "sdk-packed" in ref:
        s = ref["sdk-packed"]
        rows.append(
            (
                f"produce packed, {s['pack']} events per message",
                f"{s['events']:,} ev",
                f"{s['events_per_s']:,.0f} ev/s",
                f"{s['messages'] / s['seconds']:,.0f} msg/s",
                "per event: model_validate + model_to_json (as the SDK); no labels",
            )
        )
    if "faust-packed" in ref:
        f = ref["faust-packed"]
        rows.append(
            (
                f"consume only: faust agent, packed x{f['pack']}",
                f"{f['events']:,} ev",
                f"{f['events_per_s']:,.0f} ev/s",
                f"{f['messages_per_s']:,.0f} msg/s",
                "TypeAdapter(list[PredictionEvent]).validate_json + check_against_spec",
            )
        )
    if thr:
        rows.append(
            (
                "pipeline, SDK -> ClickHouse row",
                f"{thr['events']:,} ev",
                f"{thr['events_per_s']:,.0f} ev/s",
                f"{thr['messages_per_s']:,.0f} msg/s",
                f"{thr['seconds']:.1f} s; worker {thr['worker_events_per_cpu_s']:,.0f} ev per CPU-s, "
                f"main thread {thr['worker_main_thread_us_per_event']:,.0f} µs CPU/ev"
                + ("" if thr["complete"] else "; INCOMPLETE"),
            )
        )
        if not math.isnan(thr.get("stage1_seconds", math.nan)):
            rows.append(
                (
                    "  of which stage 1: SDK -> all partials published",
                    f"{thr['events']:,} ev",
                    f"{thr['stage1_events_per_s']:,.0f} ev/s",
                    f"{thr['messages'] / thr['stage1_seconds']:,.0f} msg/s",
                    f"{thr['stage1_seconds']:.1f} s; then {thr['tail_after_stage1_s']:.1f} s to close + sink",
                )
            )
    out = [table(rows, ("measurement", "size", "events/s", "messages/s", "note"), {1, 2, 3})]
    if lat:
        out.append("")
        out.append(
            table(
                [
                    (
                        f"{lat['rate']:,.0f} ev/s, {lat['events_per_window']} ev/window",
                        str(lat["landed_windows"]),
                        f"{lat['p50_s']:.2f}",
                        f"{lat['p90_s']:.2f}",
                        f"{lat['p99_s']:.2f}",
                        f"{lat['max_s']:.2f}",
                    )
                ],
                (
                    "latency: last event logged -> window's final `events` row",
                    "windows",
                    "p50 s",
                    "p90 s",
                    "p99 s",
                    "max s",
                ),
                {1, 2, 3, 4, 5},
            )
        )
    if results.micro:
        out.append("")
        out.append(
            table(
                [(name, f"{us:,.1f}", f"{1e6 / us:,.0f}") for name, us in results.micro],
                ("per-event cost, one core, in process", "µs/event", "events/s alone"),
                {1, 2},
            )
        )
    prof = results.profile
    if prof.get("samples"):
        out.append("")
        out.append(
            table(
                [(role, f"{n:,}", f"{100 * busy:.0f}%") for role, n, busy in prof["threads"]],
                (f"worker threads, py-spy {prof['seconds']} s at {prof['rate']} Hz", "samples", "busy"),
                {1, 2},
            )
        )
        for key, title in (
            ("categories", "main thread by category (leaf-most match)"),
            ("self", "main thread, top frames by own time"),
            ("inclusive", "main thread, top frames including callees"),
        ):
            out.append("")
            rows = [(name, f"{100 * share:.1f}%") for name, share in prof[key]]
            out.append(table(rows, (title, "share"), {1}))
    elif prof.get("error"):
        out.append(f"\nprofile failed: {prof['error']}")
    m = results.machine
    if m:
        versions_text = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        load = ", ".join(f"{x:.1f}" for x in m.get("loadavg", ()))
        out.append("")
        where = f"{m.get('cpus')} CPUs ({m.get('cpu')}), load average {load}"
        out.append(f"Measured {m.get('date')} at git {m.get('git')} on {where}; {versions_text}")
    out.append("")
    if thr and thr["complete"]:
        out.append(
            f"RESULT pipeline: {thr['events_per_s']:,.0f} events/s per worker process end to end "
            f"({thr['events']:,} events, 20 features)"
        )
    elif thr:
        out.append(
            f"RESULT pipeline: INCOMPLETE, {thr['counted_events']:,} of {thr['events']:,} events "
            f"in ClickHouse after {thr['seconds']:.0f} s; no rate reported"
        )
    if lat:
        out.append(
            f"RESULT latency: p50 {lat['p50_s']:.2f} s, p99 {lat['p99_s']:.2f} s "
            f"({lat['landed_windows']} windows at {lat['rate']:,.0f} events/s)"
        )
    out.append(f"Reproduce: {command}")
    return "\n".join(out)
