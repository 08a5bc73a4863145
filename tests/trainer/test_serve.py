"""The reference model server: predictions with confidence, corrections
logged and counted, the metric contract on /metrics, and an adapter that is
not exactly its ModelVersion's (manifest or any file) refused before loading."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from prometheus_client.parser import text_string_to_metric_families
from relearn_sandbox.processes import free_port
from relearn_trainer import synthetic
from relearn_trainer.modeling import LoraSettings, add_lora, load_base
from relearn_trainer.publishing import publish


@pytest.fixture(scope="module")
def base(tiny_champion: Path) -> Path:
    return tiny_champion  # read only here


def start(base: Path, tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    environment = {
        **os.environ,
        "RELEARN_MODEL": "documents",
        "RELEARN_MODEL_VERSION": "1.0.0",
        "RELEARN_BASE_MODEL_URI": str(base),
        "RELEARN_DATASET_URI": str(tmp_path / "data"),
        "PORT": str(port),
        "RELEARN_BIND": "127.0.0.1",
        "RELEARN_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log"),
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "relearn_trainer", "serve"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, f"http://127.0.0.1:{port}"


def wait_healthy(process: subprocess.Popen[str], url: str, timeout: float = 60) -> None:
    """Until /healthz answers (the model is loaded); fails with the server's stderr if it dies."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            return
        except OSError:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, f"the server did not come up within {timeout}s"
            time.sleep(0.2)


@pytest.fixture
def server(base: Path, tmp_path: Path) -> Iterator[str]:
    process, url = start(base, tmp_path)
    wait_healthy(process, url)
    yield url
    process.terminate()
    process.wait(timeout=30)


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    return dict(json.loads(urllib.request.urlopen(request, timeout=10).read()))


def test_predict_feedback_metrics_and_the_dataset_log(server: str, tmp_path: Path) -> None:
    text, label = synthetic.samples(1, seed=9)[0]
    answer = post(f"{server}/predict", {"input": text})
    assert answer["prediction"] in synthetic.LABELS
    assert 0 < answer["confidence"] <= 1
    assert answer["version"] == "1.0.0"
    verdict = post(f"{server}/feedback", {"input": text, "label": label})
    assert verdict["correct"] == (answer["prediction"] == label)

    samples = {
        (s.name, s.labels.get("outcome", "")): s.value
        for family in text_string_to_metric_families(
            urllib.request.urlopen(f"{server}/metrics", timeout=5).read().decode()
        )
        for s in family.samples
    }
    assert samples[("relearn_model_predictions_total", "")] == 1
    assert samples[("relearn_model_feedback_total", "correct" if verdict["correct"] else "incorrect")] == 1

    (log,) = (tmp_path / "data").glob("served-1.0.0-*.jsonl")
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["prediction", "correction"]
    assert records[1]["label"] == label
    assert records[0]["features"]["length"] == len(text.split())


def test_a_label_for_a_request_another_version_served_counts_the_pair(server: str) -> None:
    text, label = synthetic.samples(1, seed=11)[0]
    mine = post(f"{server}/predict", {"input": text})["prediction"]
    champion_answer = label if mine != label else next(other for other in synthetic.LABELS if other != label)
    post(
        f"{server}/feedback",
        {"input": text, "label": label, "served": {"version": "0.9.0", "prediction": champion_answer}},
    )
    pairs = {
        (s.labels["champion_outcome"], s.labels["outcome"]): s.value
        for family in text_string_to_metric_families(
            urllib.request.urlopen(f"{server}/metrics", timeout=5).read().decode()
        )
        for s in family.samples
        if s.name == "relearn_model_shadow_feedback_total" and s.labels["champion"] == "0.9.0"
    }
    expected = ("correct" if champion_answer == label else "incorrect", "correct" if mine == label else "incorrect")
    assert pairs[expected] == 1
    assert sum(pairs.values()) == 1


def test_bad_requests_are_refused_with_a_reason(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as empty:
        post(f"{server}/predict", {})
    assert empty.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as unknown:
        post(f"{server}/feedback", {"input": "x", "label": "not-a-class"})
    assert "unknown label" in unknown.value.read().decode()


@pytest.fixture(scope="module")
def adapter(base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A published (untrained) LoRA adapter of ``base`` and its manifest's sha256."""
    model, _ = load_base(str(base), torch.device("cpu"))
    staging = tmp_path_factory.mktemp("adapter")
    add_lora(model, LoraSettings(target_modules=("query", "value"))).save_pretrained(staging)
    files = {name: (staging / name).read_bytes() for name in ("adapter_model.safetensors", "adapter_config.json")}
    files["labels.json"] = json.dumps({"task": "sequence-classification", "labels": synthetic.LABELS}).encode()
    uri, digest = publish(str(tmp_path_factory.mktemp("published")), "1.1.0", files)
    return Path(uri), digest


def copy_of(adapter: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(adapter, tmp_path / "copy"))


def refused(process: subprocess.Popen[str]) -> str:
    """The reason a server that must not start gives; fails if it starts."""
    assert process.wait(timeout=60) == 4
    return process.stderr.read() if process.stderr else ""


def test_a_verified_adapter_is_served(base: Path, adapter: tuple[Path, str], tmp_path: Path) -> None:
    folder, digest = adapter
    process, url = start(base, tmp_path, RELEARN_ADAPTER_URI=str(folder), RELEARN_ADAPTER_SHA256=digest)
    try:
        wait_healthy(process, url)
        assert post(f"{url}/predict", {"input": "invoice total due"})["prediction"] in synthetic.LABELS
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_manifest_that_is_not_the_model_versions_is_refused(
    base: Path, adapter: tuple[Path, str], tmp_path: Path
) -> None:
    process, _ = start(base, tmp_path, RELEARN_ADAPTER_URI=str(adapter[0]), RELEARN_ADAPTER_SHA256="0" * 64)
    assert "does not match its ModelVersion" in refused(process)


def test_an_adapter_with_one_byte_of_its_weights_changed_is_refused(
    base: Path, adapter: tuple[Path, str], tmp_path: Path
) -> None:
    folder = copy_of(adapter[0], tmp_path)
    weights = folder / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # the last byte of the last tensor; the manifest is untouched
    weights.write_bytes(bytes(data))
    process, _ = start(base, tmp_path, RELEARN_ADAPTER_URI=str(folder), RELEARN_ADAPTER_SHA256=adapter[1])
    reason = refused(process)
    assert "adapter_model.safetensors does not match its sha256 in the manifest" in reason
    message = json.loads((tmp_path / "termination-log").read_text())
    assert message["error"] == "ArtifactError"


def test_a_file_the_manifest_does_not_name_is_refused(base: Path, adapter: tuple[Path, str], tmp_path: Path) -> None:
    folder = copy_of(adapter[0], tmp_path)
    (folder / "adapter_model.bin").write_bytes(b"not in the manifest")
    process, _ = start(base, tmp_path, RELEARN_ADAPTER_URI=str(folder), RELEARN_ADAPTER_SHA256=adapter[1])
    assert "files its manifest does not name: ['adapter_model.bin']" in refused(process)


def test_an_adapter_without_a_sha256_is_served_only_when_explicitly_allowed(
    base: Path, adapter: tuple[Path, str], tmp_path: Path
) -> None:
    process, _ = start(base, tmp_path, RELEARN_ADAPTER_URI=str(adapter[0]))
    assert "RELEARN_ALLOW_UNVERIFIED_ADAPTER=true" in refused(process)
    process, url = start(base, tmp_path, RELEARN_ADAPTER_URI=str(adapter[0]), RELEARN_ALLOW_UNVERIFIED_ADAPTER="true")
    try:
        wait_healthy(process, url)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "serving the unverified adapter" in (process.stderr.read() if process.stderr else "")


def test_a_causal_language_model_serves_its_labels(tmp_path: Path) -> None:
    base = synthetic.build_tiny_model(
        tmp_path / "causal", pretrain_on=synthetic.samples(200, seed=1), task="causal-lm", epochs=5
    )
    process, url = start(base, tmp_path, RELEARN_MODEL_TASK="causal-lm", RELEARN_LABELS=",".join(synthetic.LABELS))
    try:
        wait_healthy(process, url)
        answer = post(f"{url}/predict", {"input": synthetic.samples(1, seed=3)[0][0]})
        assert answer["prediction"] in synthetic.LABELS
        assert 0 < answer["confidence"] <= 1
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_fault_switch_fails_requests_and_counts_them_only_when_enabled(base: Path, tmp_path: Path) -> None:
    process, url = start(base, tmp_path, RELEARN_FAULT_INJECTION="true")
    try:
        wait_healthy(process, url)
        assert post(f"{url}/predict", {"input": "invoice total due"})["version"] == "1.0.0"
        assert post(f"{url}/admin/fault", {"failing": True}) == {"failing": True}
        with pytest.raises(urllib.error.HTTPError) as failed:
            post(f"{url}/predict", {"input": "invoice total due"})
        assert failed.value.code == 500
        metrics = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        errors = next(f for f in text_string_to_metric_families(metrics) if f.name == "relearn_model_errors")
        assert errors.samples[0].value == 1
        urllib.request.urlopen(f"{url}/healthz", timeout=5)  # still alive: only the model's answers fail
        post(f"{url}/admin/fault", {"failing": False})
        assert post(f"{url}/predict", {"input": "invoice total due"})["version"] == "1.0.0"
    finally:
        process.terminate()
        process.wait(timeout=30)
    process, url = start(base, tmp_path)  # off by default: no such endpoint
    try:
        wait_healthy(process, url)
        with pytest.raises(urllib.error.HTTPError) as missing:
            post(f"{url}/admin/fault", {"failing": True})
        assert missing.value.code in (404, 405)
    finally:
        process.terminate()
        process.wait(timeout=30)
