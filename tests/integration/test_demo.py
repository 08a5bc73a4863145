"""``make demo``, exactly as the README says, on a fresh clone: it completes
the loop and leaves no process behind, also when interrupted; a step that
does not happen is named, with the logs that explain it."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from browser import open_page
from newcomer import clone_env
from relearn.reporting.render import SECTIONS
from relearn_sandbox.testing import ControlPlane


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.fixture
def demo_dir(tmp_path: Path, control_plane: ControlPlane) -> Path:
    if not control_plane.is_sandbox:
        pytest.skip("the demo runs its own sandbox; nothing to check against a real cluster")
    return tmp_path / "demo"


def test_make_demo_on_a_fresh_clone_runs_the_loop_and_cleans_up(fresh_clone: Path) -> None:
    result = subprocess.run(
        ["make", "demo"], cwd=fresh_clone, env=clone_env(fresh_clone), capture_output=True, text=True, timeout=420
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    demo_dir = fresh_clone / ".relearn" / "demo"
    for step in (
        "sandbox control plane up",
        "operator running",
        "operator accepted every spec",
        "admission refused a broken CR",
        "spec.traffic.weight: Invalid value: 150",
        "Ready=False InvalidSpec: spec.traffic.steps",
        "no drift",
        "Drifted=True: length: PSI",
        "documents 1.1.0 Registered, held-out accuracy",
        "ABExperiment documents-1.1.0 created",
        "challenger 1.1.0 runs beside champion 1.0.0",
        "promoted 1.1.0: lift +",
        "fault injected: the new champion 1.1.0 fails every request",
        "automatic rollback to 1.0.0",
        "1.1.0 failed its health checks: error-rate",
        "Decisions the operator took",
    ):
        assert step in result.stdout
    assert "invoice-classifier-1.0.0   invoice-classifier   1.0.0" in result.stdout
    # The retrained version learnt from corrections and pseudo-labels, and it beats the MiniLM champion
    # on documents of the new wording that neither saw, by at least 20 points.
    said = " ".join(result.stdout.split())  # the timeline wraps long lines
    trained = re.search(r"trained on (\d+) corrections and (\d+) pseudo-labels", said)
    assert trained is not None, result.stdout[-6000:]
    assert int(trained[1]) > 0, trained[0]
    assert int(trained[2]) > 0, trained[0]
    gain = re.search(
        r"held-out drifted documents: 1\.1\.0 [\d.]+% vs champion 1\.0\.0 [\d.]+%: ([+-][\d.]+) points", said
    )
    assert gain is not None, result.stdout[-6000:]
    assert float(gain[1]) >= 20, gain[0]
    assert not (demo_dir / "state.json").exists()
    assert processes_mentioning(str(demo_dir)) == []
    assert f"open {demo_dir / 'report.html'} in a browser" in result.stdout
    screenshot = asyncio.run(the_report_reads_in_a_browser(demo_dir / "report.html"))
    assert screenshot[:8] == b"\x89PNG\r\n\x1a\n"
    (demo_dir / "report.png").write_bytes(screenshot)


async def the_report_reads_in_a_browser(report: Path) -> bytes:
    """The demo's report in headless Chromium: every section, every plot drawn
    from data (the loop's promotion, drift and experiment), nothing logged."""
    async with open_page(report) as page:
        sections = await page.evaluate("[...document.querySelectorAll('section')].map(s => s.id)")
        assert set(SECTIONS) <= set(sections)
        plots = await page.evaluate(
            "[...document.querySelectorAll('img.plot')].map(i => [i.dataset.plot, i.complete && i.naturalWidth])"
        )
        kinds = {kind.split("-")[0] for kind, _ in plots}
        assert {"timeline", "accuracy", "drift", "retrainings", "weights", "lift", "registry"} <= kinds
        assert all(width and width > 300 for _, width in plots), plots
        text = await page.evaluate("document.body.innerText")
        assert "Promoted" in text
        assert "RolledBack" in text
        assert "no relearn_drift_score series" not in text
        assert "no feedback" not in text
        screenshot = await page.screenshot()
        assert page.problems == []
    return screenshot


def test_interrupted_demo_stops_everything_it_started(demo_dir: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "relearn", "demo", "--dir", str(demo_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (demo_dir / "operator.log").exists():  # the sandbox is up and the operator starting
        assert time.monotonic() < deadline, "the demo never got to start the operator"
        assert demo.poll() is None, demo.stderr.read() if demo.stderr else ""
        time.sleep(0.1)
    demo.send_signal(signal.SIGINT)
    # Read as it ends (a full stderr pipe would stall the demo). Its shutdown is bounded: the starting
    # operator gets 10 s, the sandbox 30 s before SIGKILL; a CI machine running the suite needs headroom.
    _, errors = demo.communicate(timeout=150)
    assert demo.returncode == 130, errors[-3000:]
    assert processes_mentioning(str(demo_dir)) == []


def test_a_step_that_does_not_happen_is_named_with_the_log_that_explains_it(
    control_plane: ControlPlane, api_client: Any, namespace: str, tmp_path: Path
) -> None:
    from kubernetes import client
    from relearn_sandbox.demo import explain_failure
    from relearn_sandbox.waiting import wait_for

    if not control_plane.is_sandbox:
        pytest.skip("the demo's diagnostics are checked in the sandbox, where pods run as local processes")
    crash = "cannot load the base model from /nowhere/base: folder not found"
    labels = {"app": "broken"}
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "broken"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "server",
                                "image": "python",
                                "command": [sys.executable, "-c", f"import sys; print({crash!r}); sys.exit(3)"],
                            }
                        ]
                    },
                },
            },
        },
    )
    # (without a readiness probe the crashing pod counts as available for a moment: ask for two)
    with pytest.raises(TimeoutError, match="Deployment broken to have 2 available replicas"):
        wait_for(
            client.AppsV1Api(api_client).list_namespaced_deployment,
            lambda d: d["metadata"]["name"] == "broken" and d.get("status", {}).get("availableReplicas") == 2,
            what="Deployment broken to have 2 available replicas",
            namespace=namespace,
            timeout=3,
        )
    wait_for(
        client.CoreV1Api(api_client).list_namespaced_pod,
        lambda p: any(s.get("restartCount", 0) >= 1 for s in p.get("status", {}).get("containerStatuses") or ()),
        what="the broken pod to have crashed once",
        namespace=namespace,
        timeout=60,
    )
    explained = dict(explain_failure(api_client, namespace, tmp_path))
    [(title, text)] = [(t, x) for t, x in explained.items() if t.startswith("pod/broken-")]
    assert "restarts" in title
    assert "exited 3" in text
    assert crash in text


def test_a_killed_demo_leaves_no_process_behind(demo_dir: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "relearn", "demo", "--dir", str(demo_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while not (demo_dir / "operator.log").exists():  # the sandbox is up and the operator starting
        assert time.monotonic() < deadline, "the demo never got to start the operator"
        assert demo.poll() is None
        time.sleep(0.1)
    demo.kill()  # no handler runs: what it started must stop by itself
    demo.wait(timeout=10)
    deadline = time.monotonic() + 60
    while processes_mentioning(str(demo_dir)):
        assert time.monotonic() < deadline, (
            f"still running after the demo was killed: {processes_mentioning(str(demo_dir))}"
        )
        time.sleep(0.2)
