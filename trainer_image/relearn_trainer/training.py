"""The LoRA training loop: deterministic, resumable, and polite to SIGTERM.

Checkpoints (adapter weights, optimizer state, the step, the RNG state) are
written every ``checkpoint_every`` optimizer steps, at the end of training,
and when SIGTERM arrives (Kubernetes evicting or preempting the pod): the
loop finishes the step it is in, saves, and raises :class:`Interrupted`; the
next run with the same checkpoint folder resumes where it stopped and ends
with the same adapter, bit for bit on CPU, as a run never interrupted.
Outside the loop, :class:`StopFlag` turns SIGTERM into :class:`Interrupted`
at once, naming the stage and what is saved. Called by the pipeline.
"""

from __future__ import annotations

import collections
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from relearn_trainer.data import Example
from relearn_trainer.failures import Interrupted, StopFlag
from relearn_trainer.tasks import TASKS, Task

__all__ = ["Interrupted", "StopFlag", "TrainSettings", "seed_everything", "train"]


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 3
    learning_rate: float = 2e-4
    batch_size: int = 16
    gradient_accumulation_steps: int = 1
    seed: int = 0
    checkpoint_every: int = 50
    max_length: int = 128


def seed_everything(seed: int) -> None:
    """Before anything random: a fresh head, LoRA's initial weights, dropout."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def _save(model: Any, optimizer: torch.optim.Optimizer, step: int, epoch: int, directory: Path) -> None:
    temporary = directory.with_name(directory.name + ".tmp")
    temporary.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(temporary)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "step": step,
            "epoch": epoch,
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        },
        temporary / "state.pt",
    )
    if directory.exists():
        for old in directory.iterdir():
            old.unlink()
        directory.rmdir()
    os.replace(temporary, directory)


def train(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    label_ids: dict[str, int],
    settings: TrainSettings,
    checkpoint: Path | None,
    device: torch.device,
    stop: StopFlag | None = None,
    task: Task | None = None,
) -> dict[str, Any]:
    """Fine-tune the trainable (LoRA) parameters; returns what happened."""
    task = task or TASKS["sequence-classification"]
    started = time.monotonic()
    seed_everything(settings.seed)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate)
    step, start_epoch, resumed = 0, 0, False
    if checkpoint is not None and (checkpoint / "state.pt").exists():
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(checkpoint / "adapter_model.safetensors"))
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        step, start_epoch, resumed = state["step"], state["epoch"], True
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    order = list(examples)
    batches_per_epoch = max(1, (len(order) + settings.batch_size - 1) // settings.batch_size)
    optimizer_steps_per_epoch = max(1, batches_per_epoch // settings.gradient_accumulation_steps)
    recent: collections.deque[torch.Tensor] = collections.deque(maxlen=10)
    saved_at = step if resumed else -1
    model.train()
    if stop is not None:
        stop.in_loop = True
    try:
        for epoch in range(start_epoch, settings.epochs):
            rng = random.Random(settings.seed + epoch)
            shuffled = order[:]
            rng.shuffle(shuffled)
            skip = step - epoch * optimizer_steps_per_epoch  # optimizer steps already done in this epoch
            for index in range(optimizer_steps_per_epoch):
                if index < skip:
                    continue
                optimizer.zero_grad(set_to_none=True)
                for micro in range(settings.gradient_accumulation_steps):
                    start = (index * settings.gradient_accumulation_steps + micro) * settings.batch_size
                    batch = shuffled[start : start + settings.batch_size]
                    if not batch:
                        continue
                    texts = [e.text for e in batch]
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss: Any = (
                            task.loss(
                                model,
                                tokenizer,
                                texts,
                                [e.label for e in batch],
                                label_ids,
                                device,
                                settings.max_length,
                            )
                            / settings.gradient_accumulation_steps
                        )
                    loss.backward()
                    recent.append(loss.detach() * settings.gradient_accumulation_steps)  # read once, at the end
                optimizer.step()
                step += 1
                stopping = stop is not None and stop.set
                if checkpoint is not None and (stopping or step % settings.checkpoint_every == 0):
                    _save(
                        model,
                        optimizer,
                        step,
                        epoch if index + 1 < optimizer_steps_per_epoch else epoch + 1,
                        checkpoint,
                    )
                    saved_at = step
                if stopping:
                    if checkpoint is None:
                        raise Interrupted(
                            f"SIGTERM during training at step {step}: no checkpoint (no --checkpoint-dir), "
                            "nothing was published; a rerun trains from the start"
                        )
                    raise Interrupted(
                        f"SIGTERM during training at step {step}: checkpoint saved to {checkpoint.resolve()}, "
                        "nothing was published; a rerun with the same --checkpoint-dir resumes there"
                    )
    finally:
        if stop is not None:
            stop.in_loop = False
    if checkpoint is not None and saved_at != step:
        _save(model, optimizer, step, settings.epochs, checkpoint)  # a rerun after a later SIGTERM skips training
    return {
        "steps": step,
        "resumed": resumed,
        "final_loss": float(torch.stack(list(recent)).float().mean()) if recent else None,
        "bf16": bf16,
        "seconds": round(time.monotonic() - started, 3),
    }
