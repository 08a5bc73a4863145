"""pytest fixtures for testing against a Kubernetes API: the sandbox by
default, or a real cluster (kind in CI) when ``RELEARN_TEST_KUBECONFIG``
names its kubeconfig. Load it with
``pytest_plugins = ["relearn_sandbox.testing"]`` in a ``conftest.py``.

- ``control_plane``: where the API is (kubeconfig, and the sandbox if it is one);
- ``api_client``: a ``kubernetes`` client for it;
- ``kubectl``: runs the real kubectl against it;
- ``namespace``: a fresh namespace per test, deleted afterwards;
- ``relearn_crds``: Relearn's CRDs applied once per session;
- ``sandbox``: the sandbox itself, for tests of sandbox-only behaviour;
  skipped, with the reason, on a real cluster;
- ``prometheus_url``: the sandbox's Prometheus, for tests that read metrics;
  skipped, with the reason, where Prometheus is not installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import relearn
import yaml
from kubernetes import client, config

from relearn_sandbox.cluster import Sandbox, SandboxConfig, SandboxThread
from relearn_sandbox.waiting import condition, established, wait_for

KUBECONFIG_ENV = "RELEARN_TEST_KUBECONFIG"
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@dataclass
class ControlPlane:
    kubeconfig: Path
    sandbox: Sandbox | None
    thread: SandboxThread | None = None

    @property
    def is_sandbox(self) -> bool:
        return self.sandbox is not None


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    real = os.environ.get(KUBECONFIG_ENV)
    if real:
        yield ControlPlane(Path(real), None)
        return
    workdir = tmp_path_factory.mktemp("sandbox")
    thread = SandboxThread(
        SandboxConfig(workdir=workdir, prometheus=shutil.which("prometheus") is not None, bookmark_interval=1.0)
    )
    sandbox = thread.start()
    try:
        yield ControlPlane(sandbox.kubeconfig, sandbox, thread)
    finally:
        thread.stop()


@pytest.fixture
def sandbox(control_plane: ControlPlane) -> Sandbox:
    if control_plane.sandbox is None:
        pytest.skip(f"sandbox-only behaviour; {KUBECONFIG_ENV} points at a real cluster")
    return control_plane.sandbox


@pytest.fixture
def prometheus_url(sandbox: Sandbox) -> str:
    url = sandbox.prometheus_url
    if url is None:
        pytest.skip("prometheus is not installed (make test installs it with apt)")
    return url


@pytest.fixture(scope="session")
def api_client(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield api
    api.close()


@pytest.fixture(scope="session")
def kubectl(control_plane: ControlPlane) -> Kubectl:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")

    def run(*args: str, check: bool = True, timeout: float = 60, stdin: str | None = None) -> Any:
        env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}
        result = subprocess.run(
            ["kubectl", *args], env=env, capture_output=True, text=True, timeout=timeout, input=stdin
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


@pytest.fixture
def namespace(api_client: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api_client)
    core.create_namespace({"metadata": {"name": name, "labels": {"relearn.dev/test": "true"}}})
    yield name
    core.delete_namespace(name)


def install_crds(api_client: client.ApiClient) -> None:
    """Create or replace Relearn's CRDs and wait until they are established."""
    extensions = client.ApiextensionsV1Api(api_client)
    crds = Path(relearn.__file__).resolve().parent / "crds"  # relearn-operator's package data
    for path in sorted(crds.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            try:
                extensions.create_custom_resource_definition(crd)
            except client.ApiException as error:
                if error.status != 409:
                    raise
                current = extensions.read_custom_resource_definition(crd["metadata"]["name"])
                crd["metadata"]["resourceVersion"] = current.metadata.resource_version
                extensions.replace_custom_resource_definition(crd["metadata"]["name"], crd)
    names = {crd["metadata"]["name"] for path in crds.glob("*.yaml") for crd in yaml.safe_load_all(path.read_text())}
    for name in sorted(names):
        wait_for(extensions.list_custom_resource_definition, established(name), timeout=30)


@pytest.fixture(scope="session")
def relearn_crds(api_client: client.ApiClient) -> None:
    install_crds(api_client)


__all__ = ["ControlPlane", "Kubectl", "condition", "install_crds", "wait_for"]
