"""``train``: one retraining run from dataset to published adapter.

assemble the data -> evaluate the champion -> LoRA-train on the base model ->
evaluate the new adapter -> compute the drift baseline -> publish -> report.
Called by the CLI; every step's failure has its own exception and exit code.
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from relearn.serving import histogram_counts, quantile_edges

from relearn_trainer.data import DatasetError, Example, assemble
from relearn_trainer.evaluation import evaluate
from relearn_trainer.modeling import LoraSettings, add_lora, load_base, with_adapter
from relearn_trainer.publishing import publish
from relearn_trainer.tasks import TASKS
from relearn_trainer.training import StopFlag, TrainSettings, train


@dataclass(frozen=True)
class TrainRequest:
    model: str
    version: str
    dataset_uri: str
    base_model_uri: str
    output_uri: str
    task: str = "sequence-classification"
    champion_adapter_uri: str | None = None
    lookback: datetime.timedelta = datetime.timedelta(days=30)
    pseudo_label_confidence: float = 0.9
    eval_fraction: float = 0.2
    min_samples: int = 50
    lora: LoraSettings = field(default_factory=LoraSettings)
    settings: TrainSettings = field(default_factory=TrainSettings)
    checkpoint_dir: Path | None = None
    baseline_edges: Mapping[str, Sequence[float]] | None = None


def baseline(examples: Sequence[Example], edges: Mapping[str, Sequence[float]] | None) -> list[dict[str, Any]]:
    """Feature histograms of the training data at the metric contract's edges
    (the champion's, to keep them fixed; else quantiles of these data)."""
    values: dict[str, list[Any]] = {}
    for example in examples:
        for name, value in example.features.items():
            values.setdefault(name, []).append(value)
    features = []
    for name, seen in sorted(values.items()):
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in seen):
            cut = list((edges or {}).get(name) or quantile_edges(seen, 10))
            features.append({"name": name, "type": "numeric", "edges": cut, "counts": histogram_counts(cut, seen)})
        else:
            categories = sorted({str(v) for v in seen})[:127]
            counts = [float(sum(str(v) == c for v in seen)) for c in categories]
            features.append({"name": name, "type": "categorical", "categories": categories, "counts": counts})
    return features


def run(request: TrainRequest, now: datetime.datetime | None = None) -> dict[str, Any]:
    now = now or datetime.datetime.now(datetime.UTC)
    data = assemble(
        request.dataset_uri,
        now=now,
        lookback=request.lookback,
        confidence=request.pseudo_label_confidence,
        eval_fraction=request.eval_fraction,
        min_samples=request.min_samples,
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    task = TASKS[request.task]
    base, tokenizer = load_base(request.base_model_uri, device, task)
    label_ids = task.labels(base, [e.label for e in data.train + data.eval])
    unknown = sorted({e.label for e in data.train + data.eval} - set(label_ids))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the base model's {sorted(label_ids)}")
    champion = evaluate(
        with_adapter(copy.deepcopy(base), request.champion_adapter_uri),
        tokenizer,
        data.eval,
        label_ids,
        device,
        task=task,
    )
    model = add_lora(base, request.lora, task)
    with StopFlag() as stop:
        progress = train(
            model, tokenizer, data.train, label_ids, request.settings, request.checkpoint_dir, device, stop, task
        )
    metrics = evaluate(model, tokenizer, data.eval, label_ids, device, task=task)
    metrics["championAccuracy"] = champion["accuracy"]
    features = baseline(data.train, request.baseline_edges)

    staging = Path(request.checkpoint_dir or Path("/tmp")) / f"adapter-{request.version}"
    model.save_pretrained(staging)
    files = {name: (staging / name).read_bytes() for name in ("adapter_model.safetensors", "adapter_config.json")}
    files["metrics.json"] = json.dumps({"new": metrics, "champion": champion, "training": progress}, indent=2).encode()
    files["baseline.json"] = json.dumps({"features": features}, indent=2).encode()
    files["data_report.json"] = json.dumps(data.report, indent=2).encode()
    # The labels in score order, so the server predicts with the same ones.
    files["labels.json"] = json.dumps(
        {"task": task.name, "labels": sorted(label_ids, key=label_ids.__getitem__)}, indent=2
    ).encode()
    uri, digest = publish(request.output_uri, request.version, files)
    return {
        "model": request.model,
        "version": request.version,
        "uri": uri,
        "sha256": digest,
        "metrics": {k: round(metrics[k], 4) for k in ("accuracy", "macroF1", "loss", "samples", "championAccuracy")},
        "data": {
            "examples": data.report["examples"],
            "bySource": data.report["bySource"],
            "window": data.report["window"],
        },
        "training": {"steps": progress["steps"], "resumed": progress["resumed"]},
        "baseline": features,
    }
