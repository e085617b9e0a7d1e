"""The docs that are generated from code are up to date, and the README keeps its two commands."""

from __future__ import annotations

from pathlib import Path

from modelmon.schema import schemas_markdown

ROOT = Path(__file__).resolve().parents[1]
MARKER = "<!-- generated: modelmon schema markdown -->\n"


def test_events_doc_matches_the_contract() -> None:
    text = (ROOT / "docs/events.md").read_text()
    assert MARKER in text
    generated = text.split(MARKER, 1)[1]
    assert generated.strip() == schemas_markdown().strip(), (
        "docs/events.md is stale: run `modelmon schema markdown` and paste it after the marker"
    )


def test_readme_starts_with_the_two_commands() -> None:
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if line.strip()]
    assert lines[0] == "```sh"
    assert lines[1].startswith("make demo")
    assert lines[2].startswith("make test")
    assert lines[3] == "```"


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci/run").read_text()
    assert "make test" in script.splitlines()[-1]


def test_docs_links_resolve() -> None:
    import re

    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(((?:docs/)?[\w./-]+\.md)(?:#[\w-]+)?\)", page.read_text()):
            base = ROOT if page.name == "README.md" else page.parent
            assert (base / target).exists(), f"{page.name} links to missing {target}"
