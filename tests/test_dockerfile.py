"""The ``Dockerfile`` and ``.dockerignore`` of the modelmon image, checked without Docker.

The image must be built from Python 3.11 with ``pip install .``, run ``modelmon worker`` as a
non-root user, ship ``models/``, copy only files that exist and are not ignored, and keep
secrets and local state out of the build context. ``tests/test_compose.py`` checks the
``docker-compose.yml`` that runs the image.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    lines = (line.strip() for line in text.splitlines())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_builds_the_modelmon_image() -> None:
    instructions = _instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms and all(base.startswith("python:3.11") for base in froms), froms
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert "pip install ." in runs and "rocksdict" in runs
    entrypoint = [json.loads(args) for op, args in instructions if op == "ENTRYPOINT"]
    assert entrypoint[-1:] == [["modelmon"]]
    cmd = [json.loads(args) for op, args in instructions if op == "CMD"]
    assert cmd[-1:] == [["worker"]]
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image runs as a non-root user"
    copies = [args.split() for op, args in instructions if op == "COPY"]
    assert any(parts[0].rstrip("/") == "models" for parts in copies), "the image ships models/"


def test_dockerfile_copies_only_what_exists_and_is_not_ignored() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for op, args in _instructions():
        parts = args.split()
        if op != "COPY" or any(part.startswith("--from") for part in parts):
            continue
        sources = [part for part in parts[:-1] if not part.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: not in the repo"
            assert source.rstrip("/").split("/")[0] not in ignored, (
                f"COPY {source}: excluded by .dockerignore"
            )


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    for pattern in (".git", ".venv", ".env", ".modelmon"):
        assert pattern in ignored, f".dockerignore should exclude {pattern}"


def test_console_script_matches_the_entrypoint() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["scripts"].get("modelmon", "").startswith("modelmon.app.cli:")
