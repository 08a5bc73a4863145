"""Held-out evaluation: accuracy, macro F1, loss and sample count, for either
task (the model's scores per label, see :mod:`relearn_trainer.tasks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from relearn_trainer.data import Example
from relearn_trainer.tasks import TASKS, Reader, Task


@torch.no_grad()
def evaluate(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    label_ids: dict[str, int],
    device: torch.device,
    batch_size: int = 64,
    task: Task | None = None,
) -> dict[str, Any]:
    task = task or TASKS["sequence-classification"]
    model.eval()
    reader = Reader(model, tokenizer, label_ids, device, 128)
    predictions: list[int] = []
    targets: list[int] = []
    loss_sum = 0.0
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        scores = task.scores(reader, [e.text for e in batch])
        target = torch.tensor([label_ids[e.label] for e in batch], device=scores.device)
        loss_sum += float(torch.nn.functional.cross_entropy(scores, target, reduction="sum"))
        predictions += scores.argmax(dim=-1).tolist()
        targets += target.tolist()
    count = len(targets)
    accuracy = sum(p == t for p, t in zip(predictions, targets, strict=True)) / count if count else 0.0
    f1s = []
    for label in set(targets):
        tp = sum(p == t == label for p, t in zip(predictions, targets, strict=True))
        fp = sum(p == label != t for p, t in zip(predictions, targets, strict=True))
        fn = sum(t == label != p for p, t in zip(predictions, targets, strict=True))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": accuracy,
        "macroF1": sum(f1s) / len(f1s) if f1s else 0.0,
        "loss": loss_sum / count if count else 0.0,
        "samples": count,
    }
