"""The scheduled report: the chart's CronJob command, run against a
registry, writes the report at its URI and posts the summary, with the
report's location, to the webhook; ``relearn status`` shows the same
registry at a glance. (The report of a whole loop, opened in a browser, is
checked after ``make demo`` in test_demo.py.)"""

from __future__ import annotations

import datetime
import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes import client
from relearn_sandbox.testing import ControlPlane

GROUP, VERSION = "relearn.dev", "v1alpha1"


def cronjob_args(repo: Path, namespace: str, output: str) -> list[str]:
    chart = helm_python.Chart.load(str(repo / "charts" / "relearn"))
    try:
        files = chart.render(
            {"report": {"enabled": True, "namespaces": [namespace], "output": output, "webhook": {"secretName": "s"}}},
            name="relearn",
            namespace="relearn-system",
            is_install=True,
        )
    finally:
        chart.close()
    docs = [d for name, text in files.items() if name.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    (job,) = [d for d in docs if d["kind"] == "CronJob"]
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


@pytest.fixture
def webhook() -> Iterator[list[dict[str, Any]]]:
    received: list[dict[str, Any]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    received.append({"url": f"http://127.0.0.1:{server.server_address[1]}/hooks/report"})
    yield received
    server.shutdown()


def registry(custom: client.CustomObjectsApi, namespace: str) -> None:
    now = datetime.datetime.now(datetime.UTC)

    def at(minutes: float) -> str:
        return (now - datetime.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")

    for version, champion, status in (
        (
            "1.0.0",
            True,
            {"phase": "Archived", "history": [{"time": at(30), "action": "Demoted", "toVersion": "1.1.0"}]},
        ),
        (
            "1.1.0",
            False,
            {
                "phase": "Champion",
                "championSince": at(30),
                "history": [
                    {"time": at(30), "action": "Promoted", "reason": "ChallengerBetter", "fromVersion": "1.0.0"}
                ],
            },
        ),
    ):
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelVersion",
            "metadata": {"name": f"ranker-{version}"},
            "spec": {
                "model": "ranker",
                "version": version,
                "baseModel": {"uri": "file:///models/base"},
                "declaredChampion": champion,
            },
        }
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "modelversions", f"ranker-{version}", {"status": status}
        )


def test_the_cronjobs_command_writes_the_report_at_its_uri_and_posts_the_summary(
    control_plane: ControlPlane,
    repo: Path,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    webhook: list[dict[str, Any]],
) -> None:
    registry(client.CustomObjectsApi(api_client), namespace)
    uri = f"file://{tmp_path}/reports/relearn-report-{{namespace}}-{{date}}.html"
    args = cronjob_args(repo, namespace, uri)
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "RELEARN_REPORT_WEBHOOK_URL": webhook[0]["url"]}
    run = subprocess.run([sys.executable, "-m", "relearn", *args], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    written = tmp_path / "reports" / f"relearn-report-{namespace}-{today}.html"
    page = written.read_text()
    assert "<section id='timeline'>" in page
    assert "ChallengerBetter" in page
    (posted,) = webhook[1:]
    assert posted["report"] == uri.replace("{namespace}", namespace).replace("{date}", today)
    assert f"Relearn report: {namespace}/ranker" in posted["summary"]
    assert "champion: 1.1.0" in posted["summary"]
    assert webhook[0]["url"] not in run.stdout + run.stderr  # the URL carries a token: never printed


def test_status_shows_the_registry_at_a_glance(
    control_plane: ControlPlane, namespace: str, relearn_crds: None, api_client: client.ApiClient
) -> None:
    registry(client.CustomObjectsApi(api_client), namespace)
    env = {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig), "COLUMNS": "200"}
    run = subprocess.run(
        [sys.executable, "-m", "relearn", "status", "-n", namespace],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    (row,) = [line for line in run.stdout.splitlines() if "ranker" in line]
    assert "1.1.0" in row
    assert "no DriftPolicy" in row
