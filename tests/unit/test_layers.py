"""The layering is a checked contract: ``lint-imports`` (import-linter, the
contracts in pyproject.toml's ``[tool.importlinter]``) passes on the tree
and fails on a copy with one forbidden import, naming the contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (the dev extra)")


def lint_imports(operator_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(operator_dir), str(ROOT / "trainer_image"), str(ROOT / "sandbox")]),
    }
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=operator_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def copy_with(tmp_path: Path, module: str, line: str) -> Path:
    tree = tmp_path / "operator"
    shutil.copytree(ROOT / "operator" / "relearn", tree / "relearn", ignore=shutil.ignore_patterns("__pycache__"))
    if module.startswith("relearn_sandbox/"):
        # The copy comes before ROOT/sandbox on the PYTHONPATH, so it is the one analysed.
        shutil.copytree(
            ROOT / "sandbox" / "relearn_sandbox", tree / "relearn_sandbox", ignore=shutil.ignore_patterns("__pycache__")
        )
        path = tree / module
    else:
        path = tree / "relearn" / module
    path.write_text(path.read_text() + f"\n{line}\n")
    return tree


def test_the_tree_keeps_every_layering_contract() -> None:
    result = lint_imports(ROOT / "operator")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        pytest.param(
            "core/stats.py",
            "from relearn.handlers import guard",
            "cli > commands > handlers | reporting > adapters > core > api",
            id="core-imports-a-handler",
        ),
        pytest.param(
            "core/rollback.py",
            "import kubernetes",
            "the decision core imports no I/O library and not the serving SDK",
            id="core-imports-the-kubernetes-client",
        ),
        pytest.param(
            "handlers/experiments/arms.py",
            "from relearn_sandbox import store",
            "the operator's distribution never imports the sandbox's",
            id="handler-imports-the-sandbox",
        ),
        pytest.param(
            "reporting/status.py",
            "import rich",
            "the operator's distribution never imports the sandbox's",
            id="the-operator-imports-a-sandbox-dependency",
        ),
        pytest.param(
            "handlers/experiments/context.py",
            "from relearn.handlers.experiments import daemon",
            "handlers.experiments: one module per phase, imports pointing down",
            id="phase-module-imports-upwards",
        ),
        pytest.param(
            "relearn_sandbox/controllers/jobs.py",
            "from relearn_sandbox import processes",
            "the sandbox's controllers start no processes: API objects only",
            id="sandbox-controller-starts-processes",
        ),
        pytest.param(
            "relearn_sandbox/runtime.py",
            "from relearn_sandbox.controllers import objects",
            "sandbox: kubelet > controllers | runtime > environment | ports",
            id="sandbox-runtime-imports-a-controller",
        ),
    ],
)
def test_a_forbidden_import_fails_its_contract(tmp_path: Path, module: str, line: str, broken: str) -> None:
    result = lint_imports(copy_with(tmp_path, module, f"{line}  # noqa"))
    assert result.returncode != 0
    assert f"{broken} BROKEN" in result.stdout
