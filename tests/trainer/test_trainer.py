"""The trainer image's code on a tiny model, on CPU: data assembly, LoRA
training that beats the champion on drifted wording, publishing with a
verifiable manifest, bit-identical adapters from identical runs (resumed or
not), an honest gate, and every failure's exit code and short message."""

from __future__ import annotations

import dataclasses
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
from fsspec.implementations.local import LocalFileSystem
from hypothesis import given
from hypothesis import strategies as st
from relearn_trainer import pipeline, synthetic
from relearn_trainer.cli import _offline as cli_offline
from relearn_trainer.cli import build_parser
from relearn_trainer.cli import main as cli_main
from relearn_trainer.data import DatasetError, assemble
from relearn_trainer.failures import Interrupted, OutputError, StopFlag
from relearn_trainer.modeling import LoraSettings
from relearn_trainer.pipeline import TrainRequest
from relearn_trainer.publishing import MAX_TERMINATION_MESSAGE, failure_message, publish, verify
from relearn_trainer.serve import ModelServer, ServerConfig
from relearn_trainer.training import TrainSettings
from transformers import AutoTokenizer, BertForSequenceClassification

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
    examples = {e.text: e for e in data.train + data.eval + data.eval_pseudo}
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
    with pytest.raises(DatasetError, match=f"dataset not found: {tmp_path / 'nowhere'}"):
        assemble(str(tmp_path / "nowhere"), now=NOW, lookback=datetime.timedelta(days=1))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_champion: Path) -> Path:
    root = tmp_path_factory.mktemp("trainer")
    synthetic.workspace(root, trained=tiny_champion)
    return root


def command_line(workspace: Path, out: Path, *extra: str, checkpoints: bool = True) -> list[str]:
    """``python -m relearn_trainer``'s arguments for a run on the workspace, published under ``out``."""
    return [
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
        *(["--checkpoint-dir", str(out / "checkpoints")] if checkpoints else []),
        *extra,
    ]


def train(
    workspace: Path,
    out: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    wait: bool = True,
    checkpoints: bool = True,
    cwd: Path | None = None,
) -> Any:
    """The trainer as a pod runs it: its own process."""
    command = [sys.executable, "-m", "relearn_trainer", *command_line(workspace, out, *extra, checkpoints=checkpoints)]
    environment = {**os.environ, "RELEARN_TERMINATION_MESSAGE_PATH": str(out / "termination-log"), **(env or {})}
    out.mkdir(parents=True, exist_ok=True)
    if not wait:
        return subprocess.Popen(
            command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
        )
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_lora_adapter_beats_the_champion_on_drifted_wording(workspace: Path, tmp_path: Path) -> None:
    # How fast it trains is bench/trainer.py's to measure (against a baseline), not a timed test's.
    run = train(workspace, tmp_path)
    assert run.returncode == 0, run.stderr
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
    # 12 epochs (300 steps): the signal comes at the first checkpoint (step 5),
    # long before the end, and the resumed run still has most of them to do.
    process = train(workspace, tmp_path, "--checkpoint-every", "5", "--epochs", "12", wait=False)
    deadline = time.monotonic() + 60
    while not (tmp_path / "checkpoints" / "state.pt").exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "no checkpoint within 60s"
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    interrupted = json.loads((tmp_path / "termination-log").read_text())
    assert interrupted["error"] == "Interrupted"
    resumed = train(workspace, tmp_path, "--checkpoint-every", "5", "--epochs", "12")
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads((tmp_path / "termination-log").read_text())
    assert result["training"]["resumed"] is True
    train_examples = json.loads((Path(result["uri"]) / "data_report.json").read_text())["train"]
    # As many optimizer steps as an uninterrupted run: none lost, none repeated.
    assert result["training"]["steps"] == 12 * -(-train_examples // 16)


def test_a_causal_language_model_learns_the_new_wording_too(tmp_path: Path) -> None:
    synthetic.workspace(tmp_path, task="causal-lm")
    run = train(tmp_path, tmp_path / "run", "--task", "causal-lm", "--target-modules", "q_proj,v_proj")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "run" / "termination-log").read_text())
    assert result["metrics"]["accuracy"] >= result["metrics"]["championAccuracy"] + 0.20
    labels = json.loads((Path(result["uri"]) / "labels.json").read_text())
    assert labels == {"task": "causal-lm", "labels": sorted(synthetic.LABELS)}


@dataclasses.dataclass
class Ran:
    returncode: int
    stderr: str


@pytest.fixture
def train_here(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """The same command in this process (``relearn_trainer.cli.main``, which
    ``python -m relearn_trainer`` exits with): for runs that fail before
    training, which need no fresh interpreter and its seconds of imports."""

    def run(workspace: Path, out: Path, *extra: str) -> Ran:
        monkeypatch.setenv("RELEARN_TERMINATION_MESSAGE_PATH", str(out / "termination-log"))
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # restored afterwards: the CLI sets them
            monkeypatch.setenv(name, "1")
        out.mkdir(parents=True, exist_ok=True)
        capsys.readouterr()
        code = cli_main(command_line(workspace, out, *extra))
        return Ran(code, capsys.readouterr().err)

    return run


@pytest.mark.parametrize(
    ("change", "code", "words"),
    [
        ({"--dataset": "/no/such/dataset"}, 2, "dataset not found: /no/such/dataset"),
        ({"--base-model": "/no/such/model"}, 3, "folder not found: /no/such/model"),
        ({"--target-modules": "no_such_module"}, 3, "cannot add LoRA"),
        ({"--lookback": "a while"}, 64, "invalid duration"),
        ({"--output": "/proc/version/published"}, 5, "cannot write to the output"),
        ({"--min-samples": "100000"}, 2, "not training a model on too little data"),
    ],
)
def test_clear_errors(
    workspace: Path, tmp_path: Path, change: dict[str, str], code: int, words: str, train_here: Any
) -> None:
    args: list[str] = []
    for flag, value in change.items():
        args += [flag, value]
    run = train_here(workspace, tmp_path, *args)
    assert run.returncode == code
    assert words in run.stderr
    raw = (tmp_path / "termination-log").read_bytes()
    assert len(raw) <= MAX_TERMINATION_MESSAGE  # what Kubernetes keeps of a termination message
    message = json.loads(raw)
    assert words in message["message"]
    assert not (tmp_path / "published" / "1.1.0").exists()


def adapter_sha256(result: dict[str, Any]) -> str:
    return str(verify(result["uri"])["files"]["adapter_model.safetensors"]["sha256"])


def test_two_identical_runs_publish_the_same_adapter_and_another_seed_does_not(workspace: Path, tmp_path: Path) -> None:
    results = []
    for name, seed in (("first", "0"), ("second", "0"), ("other-seed", "1")):
        run = train(workspace, tmp_path / name, "--seed", seed, "--epochs", "2")
        assert run.returncode == 0, run.stderr
        results.append(json.loads((tmp_path / name / "termination-log").read_text()))
    first, second, other = (adapter_sha256(r) for r in results)
    assert first == second
    assert other != first  # the comparison can tell adapters apart


class StopAfter(StopFlag):
    """SIGTERM, as the training loop sees it, after ``steps`` optimizer steps."""

    def __init__(self, steps: int) -> None:
        self.remaining = steps
        super().__init__()

    @property
    def set(self) -> bool:
        self.remaining -= 1
        return self.remaining < 0

    @set.setter
    def set(self, _: bool) -> None:
        pass


def request(workspace: Path, out: Path, checkpoints: Path) -> TrainRequest:
    return TrainRequest(
        model="documents",
        version="1.1.0",
        dataset_uri=str(workspace / "data"),
        base_model_uri=str(workspace / "base"),
        output_uri=str(out),
        lora=LoraSettings(target_modules=("query", "value")),
        settings=TrainSettings(epochs=3, learning_rate=5e-3, checkpoint_every=1000),
        checkpoint_dir=checkpoints,
    )


def test_a_resumed_run_publishes_the_adapter_of_an_uninterrupted_one(workspace: Path, tmp_path: Path) -> None:
    uninterrupted = pipeline.run(request(workspace, tmp_path / "whole", tmp_path / "whole-checkpoints"), now=NOW)
    with pytest.raises(Interrupted, match="checkpoint saved to"):
        pipeline.run(request(workspace, tmp_path / "resumed", tmp_path / "checkpoints"), now=NOW, stop=StopAfter(7))
    assert not (tmp_path / "resumed" / "1.1.0").exists()
    resumed = pipeline.run(request(workspace, tmp_path / "resumed", tmp_path / "checkpoints"), now=NOW)
    assert resumed["training"] == {"steps": uninterrupted["training"]["steps"], "resumed": True}
    assert adapter_sha256(resumed) == adapter_sha256(uninterrupted)


def test_a_missing_relative_base_model_names_the_folder_it_looked_for(workspace: Path, tmp_path: Path) -> None:
    run = train(workspace, tmp_path, "--base-model", "models/base", env={"HF_HUB_OFFLINE": "0"}, cwd=tmp_path)
    assert run.returncode == 3
    message = json.loads((tmp_path / "termination-log").read_text())["message"]
    assert f"folder not found: {tmp_path / 'models' / 'base'}" in message
    assert "huggingface" not in (run.stderr + message).lower()  # never a hub lookup


def test_a_hub_is_reached_only_when_the_uri_says_so() -> None:
    parser = build_parser()
    for uri, offline in (("/models/base", "1"), ("models/base", "1"), ("hf://org/model", None)):
        environment = {"HF_HUB_OFFLINE": "0"}
        with pytest.MonkeyPatch.context() as patch:
            for key, value in environment.items():
                patch.setenv(key, value)
            cli_offline(parser.parse_args(["serve", "--base-model", uri]))
            assert os.environ.get("HF_HUB_OFFLINE") == offline


def test_a_null_confidence_is_never_a_pseudo_label_and_list_features_name_their_line(tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        {"kind": "correction", "input": f"doc {i}", "label": "invoice", "timestamp": stamp(1)} for i in range(4)
    ] + [{"kind": "prediction", "input": "doc x", "prediction": "invoice", "confidence": None, "timestamp": stamp(1)}]
    write_jsonl(tmp_path / "data.jsonl", records)
    data = assemble(str(tmp_path / "data.jsonl"), now=NOW, lookback=datetime.timedelta(days=1), min_samples=1)
    assert data.report["bySource"] == {"correction": 4}
    records[1]["features"] = [1, 2]
    write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(DatasetError, match=r'data.jsonl:2: "features" must be an object'):
        assemble(str(tmp_path / "data.jsonl"), now=NOW, lookback=datetime.timedelta(days=1), min_samples=1)


def test_the_gate_compares_on_held_out_corrections_and_reports_pseudo_labels_apart(
    workspace: Path, tmp_path: Path
) -> None:
    run = train(workspace, tmp_path, "--epochs", "2")
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "termination-log").read_text())
    report = json.loads((Path(result["uri"]) / "data_report.json").read_text())
    assert result["metrics"]["samples"] == report["eval"] > 0
    assert result["pseudoLabelMetrics"]["samples"] == report["evalPseudoLabels"] > 0
    data = assemble(str(workspace / "data"), now=datetime.datetime.now(datetime.UTC), lookback=datetime.timedelta(30))
    assert {e.source for e in data.eval} == {"correction"}
    assert {e.source for e in data.eval_pseudo} == {"pseudo-label"}


def test_without_held_out_corrections_there_is_no_gate_to_pass(tmp_path: Path) -> None:
    records = [
        {"kind": "prediction", "input": f"doc {i}", "prediction": "invoice", "confidence": 0.99, "timestamp": stamp(1)}
        for i in range(40)
    ]
    write_jsonl(tmp_path / "data.jsonl", records)
    with pytest.raises(DatasetError, match="no human correction among the"):
        assemble(str(tmp_path / "data.jsonl"), now=NOW, lookback=datetime.timedelta(days=1), min_samples=1)


@pytest.mark.parametrize(
    ("line", "field", "value", "words"),
    [
        (4, "features", ["length", 12], 'served.jsonl:4: "features" must be an object'),
        (306, "confidence", "high", 'served.jsonl:306: "confidence" must be a number or null, not str'),
    ],
)
def test_bad_records_exit_2_with_their_line_in_a_short_message(
    workspace: Path, tmp_path: Path, line: int, field: str, value: object, words: str, train_here: Any
) -> None:
    records = [json.loads(text) for text in (workspace / "data" / "served.jsonl").read_text().splitlines()]
    assert records[305]["kind"] == "prediction"  # the workspace: 300 corrections, then 100 predictions
    records[line - 1][field] = value
    write_jsonl(tmp_path / "bad" / "served.jsonl", records)
    run = train_here(workspace, tmp_path, "--dataset", str(tmp_path / "bad"))
    assert run.returncode == 2
    raw = (tmp_path / "termination-log").read_bytes()
    assert len(raw) <= MAX_TERMINATION_MESSAGE
    message = json.loads(raw)
    assert message["error"] == "DatasetError"
    assert words in message["message"]


def test_a_long_non_ascii_error_is_cut_to_4096_bytes_after_encoding(workspace: Path, tmp_path: Path) -> None:
    far = Path("/", *["données-€" * 20] * 24)  # a dataset path of ~5800 bytes, many of them multi-byte
    run = train(workspace, tmp_path, "--dataset", str(far))
    assert run.returncode == 2
    raw = (tmp_path / "termination-log").read_bytes()
    assert len(raw) <= MAX_TERMINATION_MESSAGE
    message = json.loads(raw.decode("utf-8"))
    assert message["error"] == "DatasetError"
    assert message["message"].startswith("dataset not found: /données-€")
    assert message["message"].endswith("…")


@given(reason=st.text(max_size=40), message=st.text(max_size=6000), limit=st.integers(200, 4096))
def test_a_failure_message_is_json_within_the_limit_and_keeps_the_start(reason: str, message: str, limit: int) -> None:
    text = failure_message(reason, message, limit)
    assert len(text.encode()) <= limit
    body = json.loads(text)
    assert body["error"] == reason
    kept = body["message"]
    assert kept == message or (kept.endswith("…") and message.startswith(kept[:-1]))


def test_a_failed_publish_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    moves = 0
    original = LocalFileSystem.mv

    def failing_mv(self: LocalFileSystem, *args: Any, **kwargs: Any) -> Any:
        nonlocal moves
        moves += 1
        if moves == 2:
            raise OSError(28, "No space left on device")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LocalFileSystem, "mv", failing_mv)
    with pytest.raises(OutputError, match="nothing was left there"):
        publish(str(tmp_path / "out"), "1.1.0", {"a.bin": b"a", "b.bin": b"b"})
    assert not (tmp_path / "out" / "1.1.0").exists()
    monkeypatch.setattr(LocalFileSystem, "mv", original)
    uri, _ = publish(str(tmp_path / "out"), "1.1.0", {"a.bin": b"a"})
    with pytest.raises(OutputError, match="already holds a published version"):
        publish(str(tmp_path / "out"), "1.1.0", {"a.bin": b"other"})
    assert verify(uri)["files"]["a.bin"]["bytes"] == 1  # the published one is untouched


@pytest.mark.parametrize(
    ("stage", "saved"),
    [("assembling the data", "nothing was published"), ("publishing", "checkpointed in /ckpt")],
)
def test_sigterm_outside_the_training_loop_names_the_stage(stage: str, saved: str) -> None:
    with StopFlag() as stop:
        stop.stage, stop.saved = stage, saved
        with pytest.raises(Interrupted, match=f"SIGTERM while {stage}: {saved}"):
            signal.raise_signal(signal.SIGTERM)


def test_sigterm_without_checkpoints_says_nothing_was_saved(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    process = train(workspace, out, "--epochs", "200", wait=False, checkpoints=False)
    deadline = time.monotonic() + 60
    while not (out / "published").exists():  # the output is checked first: the command has started
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    message = json.loads((out / "termination-log").read_text())
    assert message["error"] == "Interrupted"
    assert "checkpoint saved" not in message["message"]
    assert "nothing was published" in message["message"]


def test_a_base_without_a_head_gets_a_fresh_one_for_the_labels(workspace: Path, tmp_path: Path) -> None:
    headless = tmp_path / "headless"
    BertForSequenceClassification.from_pretrained(workspace / "base").bert.save_pretrained(headless)
    AutoTokenizer.from_pretrained(workspace / "base").save_pretrained(headless)
    refused = train(workspace, tmp_path / "refused", "--base-model", str(headless))
    assert refused.returncode == 3
    assert "no classification head" in refused.stderr
    labels = ",".join(reversed(synthetic.LABELS))
    run = train(workspace, tmp_path / "run", "--base-model", str(headless), "--labels", labels)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "run" / "termination-log").read_text())
    assert result["metrics"]["accuracy"] >= 0.9
    saved = json.loads((Path(result["uri"]) / "labels.json").read_text())["labels"]
    assert saved == list(reversed(synthetic.LABELS))
    server = ModelServer(  # the server rebuilds the head from labels.json and loads its trained weights
        ServerConfig("documents", "1.1.0", str(headless), result["uri"], result["sha256"])
    )
    texts, wanted = zip(*synthetic.samples(50, seed=11, drifted=True), strict=True)
    served = [server.predict(text)["prediction"] for text in texts]
    assert sum(s == w for s, w in zip(served, wanted, strict=True)) >= 45
