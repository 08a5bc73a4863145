"""``train``: one retraining run from dataset to published adapter.

check the output is writable -> assemble the data -> evaluate the champion ->
LoRA-train on the base model -> evaluate the new adapter -> compute the drift
baseline -> publish -> report. Called by the CLI; every step's failure has
its own exception and exit code (:mod:`relearn_trainer.failures`), and a
SIGTERM names the step it interrupted.

The offline gate's figures (``metrics``) are on held-out human corrections
only; held-out pseudo-labels (the champion's own confident predictions, on
which it cannot be graded fairly) are reported apart (``pseudoLabelMetrics``).
Everything random is seeded from ``--seed`` before it is drawn, so the same
data, base, flags and seed give the same adapter, bit for bit on CPU.

Under torchrun (:mod:`relearn_trainer.distributed`) every rank assembles the
same data and trains its share; rank 0 alone checks the output, evaluates,
publishes and returns the result; the others return None once rank 0 has
published (or raise when it failed).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from relearn.serving import histogram_counts, quantile_edges

from relearn_trainer import distributed
from relearn_trainer.data import DatasetError, Example, assemble
from relearn_trainer.distributed import Strategy
from relearn_trainer.evaluation import evaluate
from relearn_trainer.modeling import (
    LoraSettings,
    ModelError,
    add_lora,
    load_base,
    local_path,
    seen_tokens,
    with_adapter,
)
from relearn_trainer.publishing import check_writable, publish
from relearn_trainer.tasks import TASKS
from relearn_trainer.training import StopFlag, TrainSettings, seed_everything, train

ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")


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
    strategy: Strategy = "ddp"  # under torchrun: ddp (replicas) or fsdp (shards)
    baseline_edges: Mapping[str, Sequence[float]] | None = None
    labels: tuple[str, ...] = ()  # for a base without a classification head (else the champion's labels.json)


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


def _labels_of(adapter_uri: str | None) -> list[str]:
    """The champion adapter's labels (its labels.json), in score order."""
    if not adapter_uri:
        return []
    saved = local_path(adapter_uri) / "labels.json"
    if not saved.exists():
        return []
    try:
        return [str(label) for label in json.loads(saved.read_text())["labels"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ModelError(f"the champion adapter's {saved} is unreadable: {error}") from None


def run(
    request: TrainRequest, now: datetime.datetime | None = None, stop: StopFlag | None = None
) -> dict[str, Any] | None:
    """One retraining run; ``stop`` (entered by the caller) names the stage a
    SIGTERM interrupts. None on a rank other than 0 (which publishes)."""
    ranks = distributed.from_environment(request.strategy)
    stop = stop or StopFlag()
    stop.stage = "joining the other workers"
    device = distributed.start(ranks)
    try:
        return _run(request, now or datetime.datetime.now(datetime.UTC), stop, ranks, device)
    finally:
        distributed.finish()


def _run(
    request: TrainRequest, now: datetime.datetime, stop: StopFlag, ranks: distributed.Ranks, device: torch.device
) -> dict[str, Any] | None:
    stop.stage = "checking the output"
    if ranks.main:
        check_writable(request.output_uri)  # before hours of training, not after
    stop.stage = "assembling the data"
    data = assemble(
        request.dataset_uri,
        now=now,
        lookback=request.lookback,
        confidence=request.pseudo_label_confidence,
        eval_fraction=request.eval_fraction,
        min_samples=request.min_samples,
    )
    task = TASKS[request.task]
    stop.stage = "loading the base model"
    labels = list(request.labels) or _labels_of(request.champion_adapter_uri)
    seed_everything(request.settings.seed)  # before a fresh head and LoRA's initial weights: same flags, same adapter
    base, tokenizer = load_base(request.base_model_uri, device, task, labels)
    everything = data.train + data.eval + data.eval_pseudo
    label_ids = task.labels(base, labels or [e.label for e in everything])
    unknown = sorted({e.label for e in everything} - set(label_ids))
    if unknown:
        raise DatasetError(f"labels {unknown} are not among the model's {sorted(label_ids)}")
    stop.stage = "evaluating the champion"
    champion: dict[str, Any] = {}
    champion_pseudo: dict[str, Any] = {}
    if ranks.main:  # the others go on and wait for it at the first step
        champion_model = with_adapter(copy.deepcopy(base), request.champion_adapter_uri)
        champion = evaluate(champion_model, tokenizer, data.eval, label_ids, device, task=task)
        champion_pseudo = evaluate(champion_model, tokenizer, data.eval_pseudo, label_ids, device, task=task)
        del champion_model
    stop.stage = "adding LoRA"
    seed_everything(request.settings.seed)  # again: loading the champion's adapter drew random numbers
    tokens = seen_tokens(tokenizer, (e.text for e in data.train), request.settings.max_length)
    model = add_lora(base, request.lora, task, tokens)
    stop.stage = "training"
    progress = train(
        model, tokenizer, data.train, label_ids, request.settings, request.checkpoint_dir, device, stop, task, ranks
    )
    wrapped = progress.pop("wrapped")
    if request.checkpoint_dir is not None:
        stop.saved = (
            f"nothing was published; training is done and checkpointed in {request.checkpoint_dir.resolve()}, "
            "a rerun with the same --checkpoint-dir only evaluates and publishes"
        )
    else:
        stop.saved = "nothing was published and nothing checkpointed (no --checkpoint-dir); a rerun trains again"
    stop.stage = "evaluating the new version"
    outcome: str | None = "failed"
    result: dict[str, Any] | None = None
    try:
        with distributed.full_parameters(wrapped, ranks):
            if not ranks.main:
                outcome = None
            else:
                result = _publish(
                    request, model, tokenizer, data, label_ids, device, task, champion, champion_pseudo, progress, stop
                )
                outcome = "published"
    finally:
        if ranks.active:
            # The others wait for rank 0's word: exit 0 once it published, fail with it otherwise.
            stop.stage = "waiting for rank 0 to publish"
            if ranks.main:
                # Its own outcome stands (a published version, or the error on its way up), peers or not.
                with contextlib.suppress(Exception):
                    distributed.from_main(outcome, ranks)
            elif distributed.from_main(outcome, ranks) != "published":
                raise RuntimeError("rank 0 failed to evaluate or publish the new version; see its log")
    return result


def _publish(
    request: TrainRequest,
    model: Any,
    tokenizer: Any,
    data: Any,
    label_ids: dict[str, int],
    device: torch.device,
    task: Any,
    champion: dict[str, Any],
    champion_pseudo: dict[str, Any],
    progress: dict[str, Any],
    stop: StopFlag,
) -> dict[str, Any]:
    metrics = evaluate(model, tokenizer, data.eval, label_ids, device, task=task)
    metrics["championAccuracy"] = champion["accuracy"]
    pseudo = evaluate(model, tokenizer, data.eval_pseudo, label_ids, device, task=task)
    pseudo_labels = {  # no accuracy at all (null) rather than 0 when none were held out
        "accuracy": round(pseudo["accuracy"], 4) if pseudo["samples"] else None,
        "championAccuracy": round(champion_pseudo["accuracy"], 4) if pseudo["samples"] else None,
        "samples": pseudo["samples"],
    }
    features = baseline(data.train, request.baseline_edges)

    stop.stage = "publishing"
    with tempfile.TemporaryDirectory(prefix=f"relearn-adapter-{request.version}-") as staging:
        model.save_pretrained(staging)
        files = {name: (Path(staging) / name).read_bytes() for name in ADAPTER_FILES}
    files["metrics.json"] = json.dumps(
        {
            "new": metrics,
            "champion": champion,
            "pseudoLabels": {"new": pseudo, "champion": champion_pseudo},
            "training": progress,
        },
        indent=2,
    ).encode()
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
        # The gate's figures: held-out human corrections only ("samples" of them).
        "metrics": {k: round(metrics[k], 4) for k in ("accuracy", "macroF1", "loss", "samples", "championAccuracy")},
        # The held-out pseudo-labels, apart: the champion's own confident predictions.
        "pseudoLabelMetrics": pseudo_labels,
        "data": {
            "examples": data.report["examples"],
            "bySource": data.report["bySource"],
            "window": data.report["window"],
        },
        "training": {"steps": progress["steps"], "resumed": progress["resumed"]},
        "baseline": features,
    }
