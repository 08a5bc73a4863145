"""The reference model server: predictions with confidence, corrections
logged and counted, the metric contract on /metrics, and an adapter that does
not match its ModelVersion refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from relearn.sandbox.processes import free_port
from relearn_trainer import synthetic


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.build_tiny_model(
        tmp_path_factory.mktemp("serve") / "base", pretrain_on=synthetic.samples(400, seed=1)
    )


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


def test_bad_requests_are_refused_with_a_reason(server: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as empty:
        post(f"{server}/predict", {})
    assert empty.value.code == 400
    with pytest.raises(urllib.error.HTTPError) as unknown:
        post(f"{server}/feedback", {"input": "x", "label": "not-a-class"})
    assert "unknown label" in unknown.value.read().decode()


def test_a_mismatched_adapter_is_refused(base: Path, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "manifest.json").write_text("{}")
    process, _ = start(base, tmp_path, RELEARN_ADAPTER_URI=str(adapter), RELEARN_ADAPTER_SHA256="0" * 64)
    assert process.wait(timeout=60) == 3
    assert "does not match its ModelVersion" in (process.stderr.read() if process.stderr else "")


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
