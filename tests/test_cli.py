"""The `modelmon` command line: help, version, schema export and spec check (exit codes and messages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from modelmon import __version__
from modelmon.app.cli import cli
from modelmon.events import EVENT_TYPES

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {"worker", "sink", "migrate", "broker", "schema", "demo", "spec", "produce", "status"}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="modelmon")


def listed_commands(help_text: str) -> set[str]:
    section = help_text.split("Commands:", 1)[1]
    return {line.split()[0] for line in section.splitlines() if line.startswith("  ") and line.strip()}


def write_spec(directory: Path, **overrides: object) -> Path:
    spec = {"model_id": "churn", "task": "binary", "features": {"tenure": {"type": "numerical"}}, **overrides}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "churn.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# -- help and version -----------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_command(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: modelmon [OPTIONS] COMMAND [ARGS]...")
    assert listed_commands(result.output) >= COMMANDS


def test_console_script_help() -> None:
    script = Path(sys.executable).parent / "modelmon"
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: modelmon ")
    assert listed_commands(result.stdout) >= COMMANDS


def test_python_dash_m_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelmon", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelmon, version {__version__}"


@pytest.mark.parametrize(("group", "subcommands"), [("schema", {"export"}), ("spec", {"check"})])
def test_groups_list_their_subcommands(group: str, subcommands: set[str]) -> None:
    result = run(group, "--help")
    assert result.exit_code == 0, result.output
    assert listed_commands(result.output) >= subcommands


def test_unknown_command_is_a_usage_error() -> None:
    result = run("wrker")
    assert result.exit_code == 2
    assert "No such command 'wrker'" in result.stderr


# -- schema export --------------------------------------------------------------------------------


def test_schema_export_writes_one_file_per_event_type(tmp_path: Path) -> None:
    target = tmp_path / "out" / "schemas"
    result = run("schema", "export", str(target))
    assert result.exit_code == 0, result.output
    assert sorted(result.stdout.split()) == sorted(str(target / f"{name}.json") for name in EVENT_TYPES)
    for name in EVENT_TYPES:
        schema = json.loads((target / f"{name}.json").read_text())
        assert schema["$id"] == f"{name}.json"
        assert schema["title"] == name


def test_schema_export_needs_a_directory() -> None:
    result = run("schema", "export")
    assert result.exit_code == 2
    assert "Missing argument 'DIRECTORY'" in result.stderr


# -- spec check -----------------------------------------------------------------------------------


def test_spec_check_of_the_example_models() -> None:
    result = run("spec", "check", str(ROOT / "models"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "ok  fraud-detector: binary, 7 features, 2 rules",
        "ok  house-prices: regression, 5 features, 2 rules",
    ]


def test_spec_check_defaults_to_the_models_path_setting(tmp_path: Path) -> None:
    write_spec(tmp_path / "specs")
    result = run("spec", "check", env={"MODELMON_MODELS_PATH": str(tmp_path / "specs")})
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok  churn: binary, 1 features, 0 rules\n"


def test_broken_spec_exits_2_naming_the_file_and_the_field(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "a-directory-name-long-enough-to-wrap-an-80-column-line", task="classify")
    result = run("spec", "check", str(path.parent))
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    # One line per fact: a wrapped path could not be searched for in a log.
    assert lines[0] == f"error: {path}: invalid model spec"
    assert lines[1].startswith("  - field 'task': Input should be 'binary', 'multiclass' or 'regression'")
    assert lines[1].endswith("(fix: use one of the values listed)")


@pytest.mark.parametrize("name", ["[link]", "[/bold]", "[bold red]x[/]"])
def test_error_text_that_looks_like_markup_is_printed_as_is(tmp_path: Path, name: str) -> None:
    # Used to be swallowed ('[link]') or to crash the CLI with rich's MarkupError ('[/bold]').
    write_spec(tmp_path, **{name: 1})
    result = run("spec", "check", str(tmp_path))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[1].startswith(f"  - field '{name}': Extra inputs are not permitted")


def test_invalid_yaml_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "churn.yaml"
    path.write_text("model_id: churn\nalerts: [{name: x, metric: psi\n")
    result = run("spec", "check", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {path}: not valid YAML")


def test_missing_spec_path_exits_2(tmp_path: Path) -> None:
    result = run("spec", "check", str(tmp_path / "absent"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'absent'}: no such file or directory")


def test_spec_check_fails_when_the_reference_file_is_missing(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "models", reference={"source": "file", "path": "../data/train.csv"})
    result = run("spec", "check", str(path.parent))
    assert result.exit_code == 2
    assert result.stdout == ""
    expected = tmp_path / "models" / ".." / "data" / "train.csv"
    assert result.stderr.startswith(
        f"error: {path}: field 'reference.path': '../data/train.csv' is not a file: {expected} "
    )
    assert "Traceback" not in result.output


def test_spec_check_names_the_reference_file_relative_to_the_spec(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "models", reference={"source": "file", "path": "../data/train.csv"})
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("tenure\n1\n")
    result = run("spec", "check", env={"MODELMON_MODELS_PATH": str(path.parent)})
    assert result.exit_code == 0, result.output
    expected = tmp_path / "models" / ".." / "data" / "train.csv"
    assert result.stdout == f"ok  churn: binary, 1 features, 0 rules, reference {expected}\n"


# -- reference load without FILE ------------------------------------------------------------------


def test_reference_load_without_file_and_without_reference_path_exits_2(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "models")
    result = run("reference", "load", "churn", env={"MODELMON_MODELS_PATH": str(path.parent)})
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no FILE given and {path} has no reference.path: run `modelmon reference load churn "
        "FILE`, or set reference.path in the spec\n"
    )


def test_reference_load_names_the_missing_reference_path(tmp_path: Path) -> None:
    path = write_spec(tmp_path / "models", reference={"source": "file", "path": "train.csv"})
    result = run("reference", "load", "churn", env={"MODELMON_MODELS_PATH": str(path.parent)})
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {path}: reference.path 'train.csv' is not a file: {path.parent / 'train.csv'}\n"
    )
