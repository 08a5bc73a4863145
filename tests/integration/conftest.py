"""Fixtures of the integration tests that run experiments on served models."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ab_server import GROUP, MODEL, VERSION, Served, serving, versions
from kubernetes import client
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane


@pytest.fixture
def served(
    control_plane: ControlPlane,
    prometheus_url: str,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Served]:
    accuracy = request.param
    accuracy = dict(accuracy)
    extra_env = accuracy.pop("env", {})
    replicas = int(accuracy.pop("replicas", 1))
    apps, core, custom = client.AppsV1Api(api_client), client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    deployment, service, route = serving(MODEL, accuracy, replicas=replicas, env=extra_env)
    apps.create_namespaced_deployment(namespace, deployment)
    core.create_namespaced_service(namespace, service)
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", namespace, "httproutes", route)
    for body in versions(namespace):
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    log = tmp_path / "operator.log"
    running = Served(
        namespace, control_plane.kubeconfig, log, start_operator(control_plane.kubeconfig, [namespace], log)
    )
    yield running
    assert stop_operator(running.operator) == 0, log.read_text()


@pytest.fixture
def fresh_clone(tmp_path: Path, repo: Path, control_plane: ControlPlane) -> Path:
    """A clone of this repository's HEAD, as a newcomer gets it, sharing this run's virtualenv.

    Installing a second virtualenv would take minutes: the clone's `.venv` is a link to this one
    (whose stamp `make` checks, so it installs nothing), and PYTHONPATH (set by the test) puts the
    clone's own code before this checkout's editable install.
    """
    if not control_plane.is_sandbox:
        pytest.skip("the demo runs its own sandbox; nothing to check against a real cluster")
    if shutil.which("git") is None or shutil.which("make") is None or not (repo / ".git").exists():
        pytest.skip("needs git, make and a git checkout")
    clone = tmp_path / "relearn"
    subprocess.run(["git", "clone", "--quiet", str(repo), str(clone)], check=True, timeout=120)
    projects = [clone / "pyproject.toml", clone / "sandbox" / "pyproject.toml"]  # what the Makefile's stamp hashes
    stamp = hashlib.sha256(b"".join(p.read_bytes() for p in projects)).hexdigest()[:12]
    if not (Path(sys.prefix) / f".installed-{stamp}").exists():
        # `make` would reinstall into this virtualenv, pointed at a folder about to be deleted.
        pytest.skip("this virtualenv was not set up by `make` from the committed pyproject.toml (commit it first)")
    (clone / ".venv").symlink_to(sys.prefix)
    installed = (Path(sys.prefix) / f".installed-{stamp}").stat().st_mtime
    for project in projects:  # make: installed after the clone's pyprojects
        os.utime(project, (installed - 1, installed - 1))
    return clone
