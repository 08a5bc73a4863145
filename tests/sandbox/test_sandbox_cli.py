"""`relearn sandbox up|status|down`, HTTPS with a token, and the message when
Prometheus is missing."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from relearn_sandbox.cluster import SandboxConfig, SandboxThread
from relearn_sandbox.prometheus import Prometheus, PrometheusNotInstalled


def relearn(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relearn", *args], capture_output=True, text=True, timeout=120)


def kubectl_with(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_up_status_down(tmp_path: Path, sandbox: Any) -> None:
    directory = tmp_path / "sb"
    up = relearn("sandbox", "up", "--dir", str(directory), "--no-prometheus")
    assert up.returncode == 0, up.stderr
    assert f"export KUBECONFIG={directory.resolve() / 'kubeconfig'}" in up.stdout
    try:
        assert relearn("sandbox", "status", "--dir", str(directory)).returncode == 0
        namespaces = kubectl_with(directory / "kubeconfig", "get", "ns", "-o", "name")
        assert "namespace/default" in namespaces.stdout.split()
        again = relearn("sandbox", "up", "--dir", str(directory), "--no-prometheus")
        assert again.stdout == up.stdout  # idempotent: the running sandbox, not a second one
    finally:
        down = relearn("sandbox", "down", "--dir", str(directory))
    assert down.stdout.strip() == "sandbox stopped"
    status = relearn("sandbox", "status", "--dir", str(directory))
    assert status.returncode == 1
    assert "no sandbox runs" in status.stdout


def test_secure_sandbox_requires_its_token_over_https(tmp_path: Path, sandbox: Any) -> None:
    secure = SandboxThread(SandboxConfig(workdir=tmp_path, prometheus=False, secure=True))
    started = secure.start()
    try:
        assert started.api_url.startswith("https://")
        namespaces = kubectl_with(started.kubeconfig, "get", "ns", "-o", "name")
        assert namespaces.returncode == 0, namespaces.stderr
        assert started.certificate is not None
        import ssl

        context = ssl.create_default_context(cafile=str(started.certificate.ca_file))
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{started.api_url}/api/v1/namespaces", context=context, timeout=5)
        assert refused.value.code == 401
        request = urllib.request.Request(
            f"{started.api_url}/api/v1/namespaces", headers={"Authorization": f"Bearer {started.token}"}
        )
        listed = json.loads(urllib.request.urlopen(request, context=context, timeout=5).read())
        assert listed["kind"] == "NamespaceList"
    finally:
        secure.stop()


def test_missing_prometheus_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda _: None)
    with pytest.raises(PrometheusNotInstalled, match="apt-get install prometheus"):
        asyncio.run(Prometheus(tmp_path).start())
