"""The house's import rules, read from the source (no import runs): arrows only point down.

    app shell (modelmon.app, python -m modelmon, modelmon.offline)
        → streams, sinks, dashboards, retrain_trigger
        → detectors
        → contract (the rest of modelmon: events, spec, settings, topics, schema, sdk, admin, references)

Two edges between the middle packages are part of the design: ``streams`` evaluates alert rules and
the retrain policy (``retrain_trigger``) and delivers alerts through the webhook sink
(``sinks.webhooks``). Nothing else crosses sideways, nothing imports a module or a name that starts
with ``_`` from another package, and modules do not import each other in a cycle. Imports inside
functions and under ``TYPE_CHECKING`` count: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("modelmon", "detectors", "retrain_trigger", "sinks", "dashboards", "streams")

ALLOWED: dict[str, frozenset[str]] = {
    "contract": frozenset(),
    "detectors": frozenset({"contract"}),
    "retrain_trigger": frozenset({"contract", "detectors"}),
    "sinks": frozenset({"contract", "detectors"}),
    "dashboards": frozenset({"contract", "detectors"}),
    "streams": frozenset({"contract", "detectors", "retrain_trigger"}),
    "app": frozenset({"contract", "detectors", "retrain_trigger", "sinks", "dashboards", "streams"}),
}
"""Layer → the other layers its modules may import."""

SIDEWAYS_MODULES: dict[str, frozenset[str]] = {"streams": frozenset({"sinks.webhooks"})}
"""Layer → single modules of a sibling layer it may import (alert delivery)."""


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module (for `from a import b`: a, or a.b when a.b is a module)
    names: tuple[str, ...]  # names imported from the target (empty for `import a.b`)
    file: str  # relative to the root walked
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(file: Path, root: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SHELL_MODULES = ("modelmon.app", "modelmon.__main__", "modelmon.offline")
"""The parts of ``modelmon`` that belong to the shell: the CLI and demo (``modelmon.app``),
``python -m modelmon``, and offline use (``modelmon.offline``: the stream's computation and the
report on two DataFrames, so it needs detectors, streams, sinks and dashboards)."""


def layer_of(module: str) -> str | None:
    """The layer a first-party module belongs to, or ``None`` for third-party modules.

    >>> names = ("modelmon.spec", "modelmon.app.cli", "modelmon.__main__", "modelmon.offline.compute")
    >>> [layer_of(name) for name in (*names, "modelmon.offline_x", "streams.run", "numpy")]
    ['contract', 'app', 'app', 'app', 'contract', 'streams', None]
    """
    top = module.split(".")[0]
    if top not in PACKAGES:
        return None
    if top == "modelmon":
        shell = any(module == name or module.startswith(name + ".") for name in SHELL_MODULES)
        return "app" if shell else "contract"
    return top


def is_module(name: str, root: Path) -> bool:
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(file: Path, root: Path) -> Iterator[Import]:
    source = module_name(file, root)
    relative = str(file.relative_to(root))
    package = source if file.name == "__init__.py" else source.rpartition(".")[0]
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, (), relative, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = tuple(alias.name for alias in node.names)
            submodules = [name for name in names if is_module(f"{target}.{name}", root)]
            for name in submodules:  # `from pkg import module`: an import of pkg.module
                yield Import(source, f"{target}.{name}", (), relative, node.lineno)
            rest = tuple(name for name in names if name not in submodules)
            if rest or not submodules:
                yield Import(source, target, rest, relative, node.lineno)


def all_imports(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> list[Import]:
    return [
        found
        for package in packages
        for file in sorted((root / package).rglob("*.py"))
        if ".venv" not in file.parts
        for found in imports_of(file, root)
    ]


def wrong_way(imports: list[Import]) -> list[str]:
    """One line per import that runs against the layers."""
    problems = []
    for found in imports:
        source, target = layer_of(found.source), layer_of(found.target)
        if source is None or target is None or source == target or target in ALLOWED[source]:
            continue
        if any(
            found.target == m or found.target.startswith(m + ".") for m in SIDEWAYS_MODULES.get(source, ())
        ):
            continue
        problems.append(f"{found.where()}: {found.source} ({source}) imports {found.target} ({target})")
    return problems


def private_crossings(imports: list[Import]) -> list[str]:
    """Imports of a ``_``-module or ``_``-name that belongs to another package (first- or third-party)."""
    problems = []
    for found in imports:
        if found.target.split(".")[0] == found.source.split(".")[0] or found.target == "__future__":
            continue
        private_parts = [part for part in found.target.split(".") if part.startswith("_")]
        private_names = [name for name in found.names if name.startswith("_")]
        if private_parts or private_names:
            what = ", ".join(private_parts + private_names)
            problems.append(f"{found.where()}: {found.source} imports private {what} of {found.target}")
    return problems


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of more than one first-party module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for found in imports:
        if layer_of(found.target) is not None and found.target != found.source:
            graph.setdefault(found.source, set()).add(found.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


IMPORTS = all_imports()


def test_every_import_points_down() -> None:
    problems = wrong_way(IMPORTS)
    assert not problems, "imports against the layers (see tests/test_layers.py):\n" + "\n".join(problems)


def test_no_private_module_or_name_of_another_package() -> None:
    problems = private_crossings(IMPORTS)
    assert not problems, "\n".join(problems)


def test_no_import_cycles() -> None:
    found = cycles(IMPORTS)
    assert not found, "modules that import each other:\n" + "\n".join(" <-> ".join(g) for g in found)


def test_the_contract_is_a_real_layer() -> None:
    # The walk must see the contract's modules and the shell's, or the rules above check nothing.
    layers = {layer_of(found.source) for found in IMPORTS}
    assert layers == set(ALLOWED)
    assert any(found.source == "modelmon.spec" for found in IMPORTS)


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"modelmon/spec.py": "from streams.run import run_worker\n"},
            "modelmon.spec (contract) imports streams.run",
        ),
        (
            {"detectors/x.py": "def f():\n    from sinks import writer\n"},
            "detectors.x (detectors) imports sinks.writer",
        ),
        (
            {"streams/run.py": "from sinks.consumer import ClickHouseSink\n"},
            "streams.run (streams) imports sinks",
        ),
        (
            {"sinks/a.py": "from modelmon.app.cli import cli\n"},
            "sinks.a (sinks) imports modelmon.app.cli (app)",
        ),
    ],
)
def test_a_wrong_import_is_reported(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    package_files = {f"{p}/__init__.py": "" for p in PACKAGES} | {"modelmon/app/__init__.py": ""}
    package_files |= {
        "sinks/writer.py": "",
        "sinks/consumer.py": "",
        "modelmon/app/cli.py": "",
        "streams/run.py": "",
    }
    write_package(tmp_path, package_files | files)
    problems = wrong_way(all_imports(tmp_path))
    assert len(problems) == 1 and expected in problems[0], problems


def test_allowed_imports_are_not_reported(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {f"{p}/__init__.py": "" for p in PACKAGES}
        | {
            "modelmon/app/__init__.py": "from streams import run\nfrom sinks import consumer\n",
            "streams/run.py": "from detectors import drift\nfrom sinks.webhooks import WebhookNotifier\n",
            "detectors/drift.py": "from modelmon.spec import ModelSpec\n",
            "sinks/consumer.py": "",
            "sinks/webhooks.py": "",
            "modelmon/spec.py": "import numpy\n",
        },
    )
    assert wrong_way(all_imports(tmp_path)) == []


def test_private_crossings_and_cycles_are_reported(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {f"{p}/__init__.py": "" for p in PACKAGES}
        | {
            "streams/a.py": "from detectors._labels import canonical\nfrom streams.b import g\n",
            "streams/b.py": "def g():\n    from streams.a import f\n",
            "detectors/_labels.py": "",
            "detectors/ks.py": "from scipy.stats._stats_py import _attempt\n",
        },
    )
    imports = all_imports(tmp_path)
    problems = private_crossings(imports)
    assert [p.split(": ", 1)[1] for p in problems] == [
        "detectors.ks imports private _stats_py, _attempt of scipy.stats._stats_py",
        "streams.a imports private _labels of detectors._labels",
    ]
    assert cycles(imports) == [["streams.a", "streams.b"]]


MAX_LINES = 400


def test_every_module_has_at_most_400_lines() -> None:
    too_long = [
        f"{file.relative_to(ROOT)}: {lines} lines"
        for folder in (*PACKAGES, "tests", "bench")
        for file in sorted((ROOT / folder).rglob("*.py"))
        if ".venv" not in str(file.relative_to(ROOT))
        and (lines := len(file.read_text().splitlines())) > MAX_LINES
    ]
    assert not too_long, f"modules over {MAX_LINES} lines (split them along a seam):\n" + "\n".join(too_long)
