"""``relearn demo`` (what ``make demo`` runs) completes and leaves no
process behind, also when interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from relearn.sandbox.testing import ControlPlane


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


def test_demo_runs_the_loop_and_cleans_up(demo_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relearn", "demo", "--dir", str(demo_dir)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
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
    assert not (demo_dir / "state.json").exists()
    assert processes_mentioning(str(demo_dir)) == []


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
    assert demo.wait(timeout=60) == 130
    assert processes_mentioning(str(demo_dir)) == []
