"""``modelmon report``: PNG files and a self-contained HTML page from the seeded ClickHouse rows."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dashboards.report import models_with_data, write_report
from modelmon.spec import load_specs
from tests.dashboard_seed import CLASSIFIER, MODELS, seed

pytestmark = pytest.mark.integration
PNG = b"\x89PNG\r\n\x1a\n"


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_report_writes_pictures_and_one_self_contained_page(clickhouse: Any, tmp_path: Path) -> None:
    seed(clickhouse)
    assert models_with_data(clickhouse, "1h") == sorted(MODELS)
    page = write_report(clickhouse, list(MODELS), tmp_path, "1h", specs=load_specs("models"))
    text = page.read_text(encoding="utf-8")
    for model in MODELS:
        pictures = sorted(p.name for p in tmp_path.glob(f"{model}-*.png"))
        kinds = ["alerts", "drift-heatmap", "fidelity-lateness", "fidelity-missing", "performance"]
        kinds.append("what-moved")
        if model == CLASSIFIER:  # the seed has estimated and fairness points for the classifier only
            kinds = sorted([*kinds, "estimated-accuracy", "fairness"])
        assert pictures == [f"{model}-{kind}.png" for kind in kinds]
        for name in pictures:
            data = (tmp_path / name).read_bytes()
            width, height = _png_size(data)
            assert width >= 600 and height >= 250 and len(data) > 10_000, name
        assert f">{model}</h2>" in text
    embedded = re.findall(r"src='data:image/png;base64,([^']+)'", text)
    assert len(embedded) == 14 and all(base64.b64decode(e).startswith(PNG) for e in embedded)
    assert "http://" not in text and "https://" not in text and "<script" not in text


def test_report_command(clickhouse: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI against the session engine (through MODELMON_CLICKHOUSE_DSN, the same chdb directory)."""
    from modelmon.app.cli import cli

    seed(clickhouse)
    monkeypatch.setattr("sinks.clickhouse.connect", lambda dsn: clickhouse)
    result = CliRunner().invoke(
        cli, ["report", "--model", "house-prices", "--since", "2h", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    page = Path(result.output.strip().splitlines()[-1])
    assert page == tmp_path / "index.html" and "house-prices" in page.read_text(encoding="utf-8")
    assert "fraud-detector" not in page.read_text(encoding="utf-8")
