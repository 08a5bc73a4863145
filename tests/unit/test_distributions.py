"""The operator image holds the operator, not the sandbox: relearn-operator's
wheel (what Dockerfile.operator installs) has no sandbox module, and nothing
it requires, however indirectly, is the sandbox or a dependency only the
sandbox has (rich, cryptography; jsonpatch only as kopf's own requirement). The sandbox, the demo and the
pytest plugin are relearn-sandbox (./sandbox), which adds ``relearn demo``
and ``relearn sandbox`` by entry point."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
SANDBOX_ONLY = {"relearn-sandbox", "rich", "cryptography"}
KOPFS_OWN = {"jsonpatch"}  # kopf requires it (its patches); Relearn's operator code does not use it


def closure(name: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Every distribution ``name`` (with ``extras``) needs, as installed here."""
    seen: set[str] = set()
    todo = [(name, extras)]
    while todo:
        current, wanted = todo.pop()
        for text in metadata.requires(current) or ():
            requirement = Requirement(text)
            needed = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in ("", *wanted)
            )
            dependency = canonicalize_name(requirement.name)
            if needed and dependency not in seen:
                seen.add(dependency)
                todo.append((dependency, tuple(requirement.extras)))
    return seen


def test_the_operator_requires_nothing_of_the_sandbox_however_indirectly() -> None:
    needed = closure("relearn-operator", ("report",))  # the image installs ".[report]"
    assert "kopf" in needed  # the walk follows real requirements
    assert needed.isdisjoint(SANDBOX_ONLY), needed & SANDBOX_ONLY
    direct = {canonicalize_name(Requirement(r).name) for r in metadata.requires("relearn-operator") or ()}
    assert direct.isdisjoint(SANDBOX_ONLY | KOPFS_OWN)
    assert {canonicalize_name(Requirement(r).name) for r in metadata.requires("kopf") or ()} >= KOPFS_OWN


def test_the_sandbox_distribution_brings_what_only_it_uses() -> None:
    needed = closure("relearn-sandbox")
    assert {"relearn-operator", "rich", "jsonpatch", "cryptography"} <= needed
    commands = {e.name: e.value for e in metadata.entry_points(group="relearn.cli")}
    assert commands == {"sandbox": "relearn_sandbox.cli:add_commands"}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to list the tracked files")
def test_the_operator_wheel_holds_no_sandbox_module(tmp_path: Path) -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "crds", "operator", "trainer_image"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = tmp_path / "src"
    for name in tracked:  # what Dockerfile.operator copies, as committed (no build folders of this checkout)
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target, follow_symlinks=False)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("relearn_operator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "relearn/handlers/__init__.py" in names
    assert "relearn/crds/modelversion.yaml" in names
    assert not [n for n in names if "sandbox" in n or n.startswith("relearn/demo")], names
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert not [
        r for r in requires if canonicalize_name(Requirement(r.split(":", 1)[1]).name) in SANDBOX_ONLY | KOPFS_OWN
    ], requires


def test_the_operator_image_installs_the_operator_distribution_only() -> None:
    text = (REPO / "Dockerfile.operator").read_text()
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs
    assert all("sandbox" not in line for line in installs), installs
    assert "COPY sandbox" not in text
