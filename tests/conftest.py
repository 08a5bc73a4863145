"""Shared fixtures and paths for the test suite."""

from __future__ import annotations

from pathlib import Path

import pytest
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
