"""What the end-to-end suite shares: paths, the skip reason and running
commands against the cluster (see conftest.py for the cluster fixture)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = Path(__file__).resolve().parent / "manifests"
KUBECONFIG_ENV = "RELEARN_E2E_KUBECONFIG"
TAG = os.environ.get("RELEARN_E2E_TAG", "e2e")
TOOLS = ("docker", "kind", "helm", "kubectl")


def missing() -> str | None:
    if not os.environ.get(KUBECONFIG_ENV):
        return f"no cluster: set {KUBECONFIG_ENV} to a kind cluster's kubeconfig (see .github/workflows/e2e-kind.yaml)"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not on PATH"
    return None


def run(*command: str, timeout: float = 1800, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """A command with the cluster's kubeconfig; fails the test with its output."""
    env = {**os.environ, "KUBECONFIG": os.environ[KUBECONFIG_ENV]}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False, input=stdin)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"
    return result
