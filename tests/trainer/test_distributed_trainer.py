"""The trainer under torchrun on CPU (gloo), two local processes on the tiny
model: one adapter published by rank 0 with its result, the same optimizer
steps as one process, and a SIGTERM that stops both ranks at one checkpoint
from which the next run resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from relearn_sandbox.processes import free_port
from relearn_trainer import synthetic
from relearn_trainer.publishing import verify


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_champion: Path) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    synthetic.workspace(root, trained=tiny_champion)
    return root


def torchrun(workspace: Path, out: Path, *extra: str, strategy: str = "ddp", wait: bool = True) -> Any:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc-per-node=2",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        "--max-restarts=0",
        "-m",
        "relearn_trainer",
        "train",
        "--model=documents",
        "--model-version=1.1.0",
        f"--dataset={workspace / 'data'}",
        f"--base-model={workspace / 'base'}",
        f"--output={out / 'published'}",
        "--target-modules=query,value",
        "--epochs=8",
        "--learning-rate=5e-3",
        f"--checkpoint-dir={out / 'checkpoints'}",
        f"--strategy={strategy}",
        *extra,
    ]
    # One thread per rank: two ranks on two cores.
    env = {**os.environ, "RELEARN_TERMINATION_MESSAGE_PATH": str(out / "termination-log"), "OMP_NUM_THREADS": "1"}
    out.mkdir(parents=True, exist_ok=True)
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_two_ranks_train_one_adapter_that_rank_zero_publishes(workspace: Path, tmp_path: Path) -> None:
    run = torchrun(workspace, tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["metrics"]["accuracy"] >= result["metrics"]["championAccuracy"] + 0.20
    verify(result["uri"])
    assert sorted(p.name for p in (tmp_path / "published").iterdir()) == ["1.1.0"]
    report = json.loads((Path(result["uri"]) / "metrics.json").read_text())["training"]
    assert (report["workers"], report["strategy"]) == (2, "ddp")
    train_examples = json.loads((Path(result["uri"]) / "data_report.json").read_text())["train"]
    # batch 16 stays the global batch: as many optimizer steps as one process takes
    assert result["training"]["steps"] == 8 * -(-train_examples // 16)
    assert '"publishedBy": 0' in run.stdout  # rank 1 said it left the result to rank 0


def test_sigterm_stops_both_ranks_at_one_checkpoint_and_the_next_run_resumes(workspace: Path, tmp_path: Path) -> None:
    process = torchrun(workspace, tmp_path, "--checkpoint-every=5", "--epochs=12", wait=False)
    deadline = time.monotonic() + 120
    while not (tmp_path / "checkpoints" / "state.pt").exists():
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint within 120s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both ranks
    output, _ = process.communicate(timeout=120)
    assert process.returncode != 0
    assert json.loads((tmp_path / "termination-log").read_text())["error"] == "Interrupted", output[-3000:]
    resumed = torchrun(workspace, tmp_path, "--checkpoint-every=5", "--epochs=12")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["training"]["resumed"] is True
    train_examples = json.loads((Path(result["uri"]) / "data_report.json").read_text())["train"]
    assert result["training"]["steps"] == 12 * -(-train_examples // 16)
