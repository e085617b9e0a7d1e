"""bench/bench_decode.py: every decoder reads every message, and a tiny run prints its table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_decode import decoders, messages  # noqa: E402

from modelmon.events import PredictionEvent  # noqa: E402
from streams.decode import decode_prediction  # noqa: E402


def test_the_fast_decoder_reads_the_bench_messages_as_the_contract_does() -> None:
    values = messages(50, seed=1)
    for value in values:
        fast, contract = decode_prediction(value), PredictionEvent.model_validate_json(value)
        assert (fast.prediction_id, fast.features, fast.score) == (
            str(contract.prediction_id),
            contract.features,
            contract.score,
        )
    assert all(decode(values) == len(values) for decode in decoders().values())


def test_a_tiny_run_prints_one_result_per_decoder() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_decode.py"), "--messages", "300", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = re.findall(r"^RESULT (.+): ([\d.]+) µs/message$", proc.stdout, re.MULTILINE)
    assert [name for name, _ in results] == list(decoders())
    assert all(float(micros) > 0 for _, micros in results)
    assert "Reproduce: .venv/bin/python bench/bench_decode.py --messages 300 --rounds 1" in proc.stdout
