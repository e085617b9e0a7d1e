"""Performance estimation without labels: modelmon's streaming estimator against NannyML CBPE (issue #15).

Usage (from the repository root)::

    bash bench/setup_peers.sh                          # once: bench/.venv-nannyml (and the other peers)
    .venv/bin/python bench/bench_estimation.py         # 20k reference rows, windows of 2,000 rows
    .venv/bin/python bench/bench_estimation.py --quick --no-peers   # a second, modelmon only

Both estimators see the same reference (scores and labels) and the same windows (scores only; the
labels are read only for the realized values). The data come from a known logistic model whose
score is its own probability (perfectly calibrated; see ``bench/estimation_data.py``); the
``covariate`` scenario moves the features, the ``concept`` scenario changes P(y | x), where every
confidence-based estimator must fail. Per window: estimated accuracy and ROC AUC with their bands,
and the realized values; per estimator: mean absolute error, band coverage, and time per window.
modelmon's time per window covers folding the window's rows into ``ScoreBins`` and ``estimate()``;
NannyML's covers ``CBPE.estimate`` (imports and ``fit`` are timed apart). See bench/README.md,
section "Estimation".
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import estimation_data as data
from bench_detectors import load_average, machine

from detectors.estimation import Calibration, ScoreBins, binary_scores, estimate

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
PEER_PYTHON = BENCH_DIR / ".venv-nannyml" / "bin" / "python"
METRICS = ("accuracy", "roc_auc")
CLASSES = ("0", "1")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference-rows", type=int, default=20_000)
    p.add_argument("--chunk-rows", type=int, default=2_000, help="rows per window (NannyML chunk_size)")
    p.add_argument("--windows", type=int, default=40, help="covariate windows (concept: half as many)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--band", choices=("normal", "draws"), default="normal", help="estimate(band=...)")
    p.add_argument("--draws", type=int, default=400, help="estimate(draws=...) for --band draws")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per window; the fastest counts")
    p.add_argument("--quick", action="store_true", help="smoke run: 5k reference, 500-row windows, 8 windows")
    p.add_argument("--no-peers", action="store_true", help="modelmon only")
    p.add_argument("--data-root", type=Path, default=BENCH_DIR / "data")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    p.add_argument("--plot", type=Path, default=BENCH_DIR / "results" / "estimation_accuracy.png")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.reference_rows, args.chunk_rows, args.windows, args.repeat = 5_000, 500, 8, 1
    return args


def run_modelmon(data_dir: Path, meta: dict, band: str, draws: int, repeat: int) -> dict[str, Any]:
    ref_scores = np.load(data_dir / "reference_scores.npy")
    ref_labels = np.load(data_dir / "reference_labels.npy")
    fits = []
    for _ in range(repeat):
        started = time.perf_counter()
        calibration = Calibration.fit(CLASSES, binary_scores(ref_scores), ref_labels)
        fits.append(time.perf_counter() - started)
    chunk = meta["chunk_rows"]
    out: dict[str, Any] = {"fit_seconds": min(fits), "scenarios": {}}
    for name in meta["scenarios"]:
        scores = np.load(data_dir / f"{name}_scores.npy")
        per_metric: dict[str, dict[str, list[float]]] = {
            m: {"value": [], "lower": [], "upper": []} for m in METRICS
        }
        seconds, fold_seconds, estimate_seconds = [], [], []
        for i in range(len(scores) // chunk):
            window = scores[i * chunk : (i + 1) * chunk]
            best, best_fold, best_estimate = float("inf"), float("inf"), float("inf")
            for _ in range(repeat):
                started = time.perf_counter()
                bins = ScoreBins.empty(CLASSES)
                bins.add(binary_scores(window), (window >= 0.5).astype(np.int64))
                folded = time.perf_counter()
                result = estimate(bins, calibration, task="binary", band=band, draws=draws, seed=i)
                done = time.perf_counter()
                best = min(best, done - started)
                best_fold, best_estimate = min(best_fold, folded - started), min(best_estimate, done - folded)
            seconds.append(best)
            fold_seconds.append(best_fold)
            estimate_seconds.append(best_estimate)
            for metric in METRICS:
                for key in ("value", "lower", "upper"):
                    per_metric[metric][key].append(getattr(result[metric], key))
        out["scenarios"][name] = {
            **per_metric,
            "window_seconds": seconds,
            "fold_seconds": fold_seconds,
            "estimate_seconds": estimate_seconds,
        }
    return out


def run_peer(data_dir: Path, repeat: int) -> tuple[dict | None, str]:
    if not PEER_PYTHON.exists():
        return None, "bench/.venv-nannyml is missing; create it with `bash bench/setup_peers.sh`"
    cmd = [str(PEER_PYTHON), str(BENCH_DIR / "peers" / "nannyml_cbpe.py"), "--data", str(data_dir)]
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1", "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [*cmd, "--repeat", str(repeat)], capture_output=True, text=True, env=env, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return None, f"exit code {proc.returncode}; stderr ends: {proc.stderr.strip()[-600:]}"
    return json.loads(lines[-1]), ""


def realized(data_dir: Path, meta: dict) -> dict[str, dict[str, list[float]]]:
    chunk, out = meta["chunk_rows"], {}
    for name in meta["scenarios"]:
        scores, labels = np.load(data_dir / f"{name}_scores.npy"), np.load(data_dir / f"{name}_labels.npy")
        windows = [slice(i * chunk, (i + 1) * chunk) for i in range(len(scores) // chunk)]
        out[name] = {
            "accuracy": [data.realized_accuracy(scores[w], labels[w]) for w in windows],
            "roc_auc": [data.realized_roc_auc(scores[w], labels[w]) for w in windows],
        }
    return out


def summary(est: dict, truth: list[float], metric: str) -> dict[str, float]:
    value, lower, upper = (np.array(est[metric][k]) for k in ("value", "lower", "upper"))
    truth_a = np.array(truth)
    return {
        "mae": float(np.mean(np.abs(value - truth_a))),
        "coverage": float(np.mean((lower <= truth_a) & (truth_a <= upper))),
        "mean_band_width": float(np.mean(upper - lower)),
    }


def table(rows: list[tuple[str, ...]]) -> list[str]:
    header = (
        "scenario",
        "estimator",
        "MAE acc",
        "MAE AUC",
        "cover acc",
        "cover AUC",
        "band acc",
        "ms/window",
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in rows)]


def plot(path: Path, meta: dict, truth: dict, ours: dict, peer: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = meta["scenarios"]
    fig, axes = plt.subplots(1, len(names), figsize=(13, 4.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        x = np.arange(len(truth[name]["accuracy"]))
        mm = ours["scenarios"][name]["accuracy"]
        ax.fill_between(x, mm["lower"], mm["upper"], color="tab:blue", alpha=0.25, label="modelmon 95% band")
        ax.plot(x, mm["value"], "-o", color="tab:blue", ms=3, label="modelmon estimate")
        if peer is not None:
            nm = peer["scenarios"][name]["accuracy"]
            ax.plot(x, nm["value"], "--s", color="tab:orange", ms=3, label="NannyML CBPE estimate")
            ax.plot(x, nm["lower"], ":", color="tab:orange", lw=1, label="NannyML band (±3 sampling error)")
            ax.plot(x, nm["upper"], ":", color="tab:orange", lw=1)
        ax.plot(x, truth[name]["accuracy"], "k^", ms=4, label="realized (labels)")
        ax.set_title(f"{name} shift: accuracy per window of {meta['chunk_rows']:,} rows")
        ax.set_xlabel("window")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    data_dir = data.ensure(
        args.data_root,
        seed=args.seed,
        reference_rows=args.reference_rows,
        chunk_rows=args.chunk_rows,
        windows=args.windows,
    )
    meta = json.loads((data_dir / "meta.json").read_text())
    host = machine()
    command = f"cd {shlex.quote(str(REPO_DIR))} && " + shlex.join(
        [".venv/bin/python", "bench/bench_estimation.py", *argv]
    )
    print("# modelmon estimation bench (performance without labels)")
    print(f"machine: {host['cores']} cores, {host['cpu']}, Python {host['python']}")
    print(
        f"data: reference {meta['reference_rows']:,} labelled rows; windows of {meta['chunk_rows']:,} rows: "
        + ", ".join(f"{name} {len(meta['windows'][name])}" for name in meta["scenarios"])
        + f"; seed {meta['seed']}"
    )
    print(f"reproduce: {command}")
    load_before = load_average()
    ours = run_modelmon(data_dir, meta, args.band, args.draws, args.repeat)
    peer, why_not = (None, "--no-peers") if args.no_peers else run_peer(data_dir, args.repeat)
    truth = realized(data_dir, meta)
    rows, figures = [], {}
    for name in meta["scenarios"]:
        estimators = [("modelmon", ours, ours["scenarios"][name]["window_seconds"])]
        if peer is not None:
            estimators.append(("NannyML CBPE", peer, peer["scenarios"][name]["single_chunk_seconds"]))
        for label, record, seconds in estimators:
            stats = {m: summary(record["scenarios"][name], truth[name][m], m) for m in METRICS}
            ms = 1000 * float(np.mean(seconds))
            figures[f"{name}/{label}"] = {**stats, "ms_per_window": ms}
            rows.append(
                (
                    name,
                    label,
                    f"{stats['accuracy']['mae']:.4f}",
                    f"{stats['roc_auc']['mae']:.4f}",
                    f"{stats['accuracy']['coverage']:.0%}",
                    f"{stats['roc_auc']['coverage']:.0%}",
                    f"{stats['accuracy']['mean_band_width']:.3f}",
                    f"{ms:.2f}",
                )
            )
    print()
    print("\n".join(table(rows)))
    print()
    band = "analytic (delta method)" if args.band == "normal" else f"from {args.draws} draws"
    split = ", ".join(
        f"{n} {1000 * np.mean(r['fold_seconds']):.3f} + {1000 * np.mean(r['estimate_seconds']):.3f}"
        for n, r in ours["scenarios"].items()
    )
    print(
        f"modelmon: Calibration.fit on the reference {1000 * ours['fit_seconds']:.1f} ms; band {band}; "
        f"ms/window = ScoreBins fold + estimate(): {split}"
    )
    if peer is None:
        print(f"NannyML: skipped: {why_not}")
    else:
        batch = {n: 1000 * peer["scenarios"][n]["batch_seconds"] / len(truth[n]["accuracy"]) for n in truth}
        print(
            f"NannyML {peer['version']}: import {peer['import_seconds']:.2f} s and "
            f"fit {1000 * peer['fit_seconds']:.0f} ms "
            "(not in ms/window); ms/window above is one estimate() call per window; all windows in one call: "
            + ", ".join(f"{n} {ms:.2f} ms/window" for n, ms in batch.items())
        )
        print(f"bands: modelmon 95% ({band}); NannyML ±3 sampling errors (its confidence boundary)")
        cov = meta["scenarios"][0]
        mm, nm = figures[f"{cov}/modelmon"], figures[f"{cov}/NannyML CBPE"]
        speed = nm["ms_per_window"] / mm["ms_per_window"]
        speed_batch = batch[cov] / mm["ms_per_window"]
        for metric in METRICS:
            gap = mm[metric]["mae"] - nm[metric]["mae"]
            print(
                f"goal MAE {metric} ({cov}) <= NannyML's + 0.005: {'met' if gap <= 0.005 else 'NOT met'} "
                f"({mm[metric]['mae']:.4f} vs {nm[metric]['mae']:.4f})"
            )
        print(
            f"goal coverage >= 90% ({cov}): accuracy {mm['accuracy']['coverage']:.0%}, "
            f"ROC AUC {mm['roc_auc']['coverage']:.0%}"
        )
        print(
            f"goal >= 10x NannyML's speed: {'met' if speed >= 10 else 'NOT met'}: "
            f"{speed:.1f}x per-window calls, "
            f"{speed_batch:.1f}x against NannyML's all-windows-in-one-call"
        )
    print(f"load average: {load_before:.2f} before, {load_average():.2f} after")
    if not args.no_plot:
        plot(args.plot, meta, truth, ours, peer)
        print(f"plot: {args.plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"command": command, "machine": host, "meta": meta, "realized": truth}
        record |= {"modelmon": ours, "nannyml": peer, "skipped": why_not, "summary": figures}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
        print(f"records written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
