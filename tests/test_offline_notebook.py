"""docs/offline.ipynb runs in a fresh kernel and shows the injected drift; it is kept without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "offline.ipynb"


def _text(cell: dict) -> str:
    parts = []
    for output in cell.get("outputs", []):
        assert output["output_type"] != "error", "".join(output.get("traceback", []))
        parts.append(output.get("text") or output.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_the_notebook_is_committed_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.integration
def test_the_notebook_runs_and_reports_the_drifted_feature(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel is a new process (its own chdb engine) importing this checkout's code.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = {cell.source.strip(): _text(cell) for cell in notebook.cells if cell.cell_type == "code"}
    assert outputs['print("drifted:", result.drifted_features)'].strip() == "drifted: ['amount']"
    drift = next(text for source, text in outputs.items() if source == "result.drift")
    assert "amount" in drift and "__prediction__" in drift
    assert "accuracy" in outputs["result.performance"]
    page = tmp_path / "offline-report.html"
    html = page.read_text(encoding="utf-8")
    assert "fraud-detector" in html and html.count("data:image/png;base64,") >= 3


def test_the_docs_page_shows_the_notebooks_code() -> None:
    page = (ROOT / "docs" / "offline.md").read_text(encoding="utf-8")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    missing = [cell.source for cell in notebook.cells if cell.cell_type == "code" and cell.source not in page]
    assert not missing, "docs/offline.md lacks notebook code:\n" + "\n---\n".join(missing)
