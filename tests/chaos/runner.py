"""Running the scenarios: each in a process of its own (one chDB engine per process), one table at the end."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from tests.chaos.report import REPO, command_line, git_commit, render
from tests.chaos.result import Result, ScenarioFailed
from tests.chaos.scenarios import SCENARIOS


class Stopped(Exception):
    """SIGTERM from the runner (its timeout, or Ctrl-C): stop the scenario and clean up."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(f"stopped by {signal.Signals(signum).name}")


def run_child(name: str, workdir: Path, *, quick: bool, seed: int, json_path: Path) -> int:
    """Run one scenario in this process and write its :class:`Result` to ``json_path``."""
    signal.signal(signal.SIGTERM, _stop)
    from tests.chaos.harness import World  # the heavy imports: only in the scenario's own process

    workdir.mkdir(parents=True, exist_ok=True)
    result = Result(name, quick, seed, workdir=str(workdir))
    world = World(name, workdir, quick=quick, seed=seed)
    started = time.monotonic()
    problems: list[str] = []
    try:
        SCENARIOS[name].load()(world, result)  # it fills the counts and judges them
    except ScenarioFailed as error:
        problems.append(str(error))
    except BaseException as error:  # reported in the table; the traceback goes to a file
        (workdir / "traceback.txt").write_text(traceback.format_exc())
        first = (str(error).splitlines() or [""])[0][:200]
        problems.append(f"harness error {type(error).__name__}: {first}")
        result.notes.append(f"traceback in {workdir / 'traceback.txt'}")
    finally:
        try:
            world.close()
        except Exception as error:
            result.notes.append(f"cleanup failed: {type(error).__name__}: {error}")
    extra = problems + world.problems()
    if extra:
        result.judge(result.problems + extra)
    if result.outcome != "ok":
        result.log_tail = world.log_tail()
    result.seconds = round(time.monotonic() - started, 1)
    json_path.write_text(json.dumps(result.to_json(), indent=1, default=str))
    return 0


def _run_one(name: str, scenario_dir: Path, *, quick: bool, seed: int, timeout: float) -> Result:
    """One scenario as ``python -m tests.chaos --child NAME``; whatever happens, a Result."""
    scenario_dir.mkdir(parents=True, exist_ok=True)
    out = scenario_dir / "result.json"
    command = [sys.executable, "-m", "tests.chaos", "--child", name, "--workdir", str(scenario_dir)]
    command += ["--seed", str(seed), "--json", str(out)] + (["--quick"] if quick else [])
    with (scenario_dir / "stderr.log").open("wb") as stderr:
        # Its own process group: a timeout or Ctrl-C stops it and the workers it started.
        process = subprocess.Popen(command, cwd=REPO, stderr=stderr, start_new_session=True)
        problem = ""
        try:
            process.wait(timeout)
        except (subprocess.TimeoutExpired, KeyboardInterrupt) as error:
            problem = f"did not finish in {timeout:.0f} s" if isinstance(error, Exception) else "interrupted"
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            if problem == "interrupted":
                raise
    if out.exists():
        result = Result.from_json(json.loads(out.read_text()))
        if problem:
            result.outcome = f"FAIL: {problem}; " + result.outcome.removeprefix("FAIL: ")
        return result
    result = Result(name, quick, seed, workdir=str(scenario_dir))
    result.outcome = f"FAIL: scenario process {problem or f'exited with code {process.returncode}'}"
    tail = (scenario_dir / "stderr.log").read_text(errors="replace").splitlines()[-15:]
    result.log_tail = "\n".join(tail)
    return result


def run_all(names: list[str], *, quick: bool, seed: int, json_path: Path | None, keep: bool) -> int:
    """Run ``names`` one after the other, print progress, the table, the command and the commit."""
    command, commit = command_line(), git_commit()
    mode = "quick" if quick else "full"
    run_dir = Path(tempfile.mkdtemp(prefix="modelmon-chaos-"))
    print(f"chaos suite, {mode}, seed {seed}: {', '.join(names)} (work dir {run_dir})", flush=True)
    timeout = 300.0 if quick else 1200.0
    results: list[Result] = []
    for k, name in enumerate(names, 1):
        print(f"[{k}/{len(names)}] {name}: {SCENARIOS[name].summary}", flush=True)
        result = _run_one(name, run_dir / name, quick=quick, seed=seed, timeout=timeout)
        results.append(result)
        print(f"[{k}/{len(names)}] {name}: {result.outcome} ({result.seconds:.0f} s)", flush=True)
        if result.outcome != "ok":
            print(f"    kept {run_dir / name}; its logs:", flush=True)
            for line in (result.log_tail or "(no log)").splitlines():
                print(f"    | {line}", flush=True)
        elif not keep:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    print("\n" + render(results, command, commit, quick), flush=True)
    if json_path is not None:
        document: dict[str, Any] = {
            "command": command,
            "commit": commit,
            "mode": mode,
            "seed": seed,
            "results": [r.to_json() for r in results],
        }
        json_path.write_text(json.dumps(document, indent=1, default=str))
    if not keep and all(r.outcome == "ok" for r in results):
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if all(r.outcome == "ok" for r in results) else 1
