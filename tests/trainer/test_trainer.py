"""The trainer image's code on a tiny model, on CPU: data assembly, LoRA
training that beats the champion on drifted wording, publishing with a
verifiable manifest, resuming after SIGTERM, and clear failures."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from relearn_trainer import synthetic
from relearn_trainer.data import DatasetError, assemble
from relearn_trainer.publishing import MAX_TERMINATION_MESSAGE, verify

NOW = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.UTC)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def stamp(hours_ago: float) -> str:
    return (NOW - datetime.timedelta(hours=hours_ago)).isoformat()


def test_assembly_keeps_corrections_confident_predictions_and_recent_data(tmp_path: Path) -> None:
    records = [
        {"kind": "correction", "input": "doc a", "label": "invoice", "timestamp": stamp(1)},
        {
            "kind": "prediction",
            "input": "doc a",
            "prediction": "credit_memo",
            "confidence": 0.99,
            "timestamp": stamp(0.5),
        },  # a correction beats a later pseudo-label
        {"kind": "prediction", "input": "doc b", "prediction": "invoice", "confidence": 0.95, "timestamp": stamp(2)},
        {"kind": "prediction", "input": "doc c", "prediction": "invoice", "confidence": 0.50, "timestamp": stamp(2)},
        {"kind": "correction", "input": "doc d", "label": "invoice", "timestamp": stamp(24 * 40)},  # too old
        {"kind": "correction", "input": "doc e", "label": "credit_memo", "timestamp": stamp(3)},
        {"kind": "correction", "input": "doc e", "label": "delivery_note", "timestamp": stamp(1)},  # latest wins
    ]
    write_jsonl(tmp_path / "data" / "day1.jsonl", records)
    data = assemble(
        str(tmp_path / "data"), now=NOW, lookback=datetime.timedelta(days=30), eval_fraction=0.5, min_samples=3
    )
    examples = {e.text: e for e in data.train + data.eval}
    assert sorted(examples) == ["doc a", "doc b", "doc e"]
    assert (examples["doc a"].label, examples["doc a"].source) == ("invoice", "correction")
    assert examples["doc e"].label == "delivery_note"
    assert data.report["bySource"] == {"correction": 2, "pseudo-label": 1}
    again = assemble(
        str(tmp_path / "data"), now=NOW, lookback=datetime.timedelta(days=30), eval_fraction=0.5, min_samples=3
    )
    assert [e.text for e in again.eval] == [e.text for e in data.eval]  # the split is fixed


def test_too_little_or_missing_data_is_an_error(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "few.jsonl", [{"kind": "correction", "input": "x", "label": "invoice", "timestamp": stamp(1)}]
    )
    with pytest.raises(DatasetError, match="only 1 usable examples"):
        assemble(str(tmp_path / "few.jsonl"), now=NOW, lookback=datetime.timedelta(days=1))
    with pytest.raises(DatasetError, match="does not exist"):
        assemble(str(tmp_path / "nowhere"), now=NOW, lookback=datetime.timedelta(days=1))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trainer")
    synthetic.workspace(root)
    return root


def train(workspace: Path, out: Path, *extra: str, env: dict[str, str] | None = None, wait: bool = True) -> Any:
    command = [
        sys.executable,
        "-m",
        "relearn_trainer",
        "train",
        "--model",
        "documents",
        "--model-version",
        "1.1.0",
        "--dataset",
        str(workspace / "data"),
        "--base-model",
        str(workspace / "base"),
        "--output",
        str(out / "published"),
        "--target-modules",
        "query,value",
        "--epochs",
        "8",
        "--learning-rate",
        "5e-3",
        "--checkpoint-dir",
        str(out / "checkpoints"),
        *extra,
    ]
    environment = {**os.environ, "RELEARN_TERMINATION_MESSAGE_PATH": str(out / "termination-log"), **(env or {})}
    out.mkdir(parents=True, exist_ok=True)
    if not wait:
        return subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)


def test_lora_adapter_beats_the_champion_on_drifted_wording(workspace: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    run = train(workspace, tmp_path)
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert elapsed < 60
    result = json.loads((tmp_path / "termination-log").read_text())
    assert len((tmp_path / "termination-log").read_bytes()) <= MAX_TERMINATION_MESSAGE
    assert result["metrics"]["accuracy"] >= result["metrics"]["championAccuracy"] + 0.20
    assert result["metrics"]["samples"] > 0
    assert result["data"]["bySource"] == {"correction": 300, "pseudo-label": 100}
    manifest = verify(result["uri"])  # every file matches its sha256
    assert set(manifest["files"]) == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "metrics.json",
        "baseline.json",
        "data_report.json",
        "labels.json",
    }
    import hashlib

    assert hashlib.sha256((Path(result["uri"]) / "manifest.json").read_bytes()).hexdigest() == result["sha256"]


def test_sigterm_checkpoints_and_the_next_run_resumes(workspace: Path, tmp_path: Path) -> None:
    process = train(workspace, tmp_path, "--checkpoint-every", "5", "--epochs", "40", wait=False)
    deadline = time.monotonic() + 60
    while not (tmp_path / "checkpoints" / "state.pt").exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 60s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    interrupted = json.loads((tmp_path / "termination-log").read_text())
    assert interrupted["error"] == "Interrupted"
    resumed = train(workspace, tmp_path, "--checkpoint-every", "5", "--epochs", "40")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["training"]["resumed"] is True
    train_examples = json.loads((Path(result["uri"]) / "data_report.json").read_text())["train"]
    # As many optimizer steps as an uninterrupted run: none lost, none repeated.
    assert result["training"]["steps"] == 40 * -(-train_examples // 16)


def test_a_causal_language_model_learns_the_new_wording_too(tmp_path: Path) -> None:
    synthetic.workspace(tmp_path, task="causal-lm")
    run = train(tmp_path, tmp_path / "run", "--task", "causal-lm", "--target-modules", "q_proj,v_proj")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "run" / "termination-log").read_text())
    assert result["metrics"]["accuracy"] >= result["metrics"]["championAccuracy"] + 0.20
    labels = json.loads((Path(result["uri"]) / "labels.json").read_text())
    assert labels == {"task": "causal-lm", "labels": sorted(synthetic.LABELS)}


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"--dataset": "/no/such/dataset"}, 2, "does not exist"),
        ({"--base-model": "/no/such/model"}, 3, "cannot load the base model"),
        ({"--min-samples": "100000"}, 2, "not training a model on too little data"),
    ],
)
def test_clear_errors(workspace: Path, tmp_path: Path, change: dict[str, str], code: int, words: str) -> None:
    args: list[str] = []
    for flag, value in change.items():
        args += [flag, value]
    run = train(workspace, tmp_path, *args)
    assert run.returncode == code
    assert words in run.stderr
    message = json.loads((tmp_path / "termination-log").read_text())
    assert words in message["message"]
    assert not (tmp_path / "published").exists()
