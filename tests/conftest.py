"""Shared fixtures and paths for the test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from filelock import FileLock
from hypothesis import HealthCheck, settings

# Property tests check what holds over the input space, not how fast: on a
# loaded CI machine a per-example deadline only makes them flaky.
settings.register_profile("relearn", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("relearn")

REPO = Path(__file__).resolve().parent.parent

# control_plane, api_client, kubectl, namespace, relearn_crds, sandbox:
# the sandbox, or a real cluster when RELEARN_TEST_KUBECONFIG is set
# (relearn-sandbox's pytest plugin).
pytest_plugins = ["relearn_sandbox.testing"]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny champion the trainer and loop tests start from (what
    ``synthetic.workspace`` trains as its base), trained once per test run:
    the first pytest worker to need it trains it under a lock in the folder
    the workers share, the others reuse it (copy it before writing there)."""
    from relearn_trainer import synthetic

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each pytest-xdist worker's basetemp is inside the run's
        shared = shared.parent
    target = shared / "tiny-champion"
    with FileLock(str(target) + ".lock"):
        if not (target / BUILT).exists():
            synthetic.champion(target)
            (target / BUILT).touch()
    return target


BUILT = ".relearn-built"
