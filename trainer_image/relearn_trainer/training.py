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

from relearn_trainer import distributed
from relearn_trainer.data import Example
from relearn_trainer.distributed import Ranks
from relearn_trainer.failures import Interrupted, StopFlag
from relearn_trainer.tasks import TASKS, Reader, Task

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


def _save(
    model: Any,
    optimizer_state: dict[str, Any],
    step: int,
    epoch: int,
    directory: Path,
) -> None:
    temporary = directory.with_name(directory.name + ".tmp")
    temporary.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(temporary)
    torch.save(
        {
            "optimizer": optimizer_state,
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


def _checkpoint(
    model: Any,
    wrapped: Any,
    optimizer: torch.optim.Optimizer,
    step: int,
    epoch: int,
    directory: Path,
    ranks: Ranks,
) -> None:
    """Rank 0 writes the checkpoint (FSDP first gathers the weights and the
    optimizer state from every rank)."""
    state = distributed.optimizer_state(wrapped, optimizer, ranks)
    with distributed.full_parameters(wrapped, ranks):
        if ranks.main:
            _save(model, state, step, epoch, directory)


def _read_checkpoint(directory: Path | None) -> dict[str, Any] | None:
    if directory is None or not (directory / "state.pt").exists():
        return None
    from safetensors.torch import load_file

    return {
        "adapter": load_file(directory / "adapter_model.safetensors"),
        "state": torch.load(directory / "state.pt", weights_only=False),
    }


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
    ranks: Ranks = distributed.SINGLE,
) -> dict[str, Any]:
    """Fine-tune the trainable (LoRA) parameters; returns what happened.

    Under torchrun (``ranks``) every rank runs this with the same examples
    and settings: each takes its share of every batch, and ``batch_size``
    stays the global batch, so the optimizer steps are the same as one
    process's. Rank 0 reads and writes the checkpoints."""
    task = task or TASKS["sequence-classification"]
    started = time.monotonic()
    seed_everything(settings.seed)
    step, start_epoch, resumed = 0, 0, False
    # Rank 0's checkpoint for every rank: the others may not see its folder (a pod's /tmp).
    saved = distributed.from_main(_read_checkpoint(checkpoint) if ranks.main else None, ranks)
    if saved is not None:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, saved["adapter"])
    wrapped = distributed.wrap(model, ranks, device)
    reader = Reader(wrapped, tokenizer, label_ids, device, settings.max_length)
    parameters = [p for p in wrapped.parameters() if p.requires_grad]
    # Fused AdamW: one kernel for all parameters on a GPU (not available on CPU).
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, fused=device.type == "cuda")
    if saved is not None:
        state = saved["state"]
        distributed.load_optimizer_state(wrapped, optimizer, state["optimizer"], ranks)
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
                    batch = list(distributed.share(batch, ranks))
                    texts = [e.text for e in batch]
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                        loss: Any = (
                            task.loss(reader, texts, [e.label for e in batch]) / settings.gradient_accumulation_steps
                        )
                    loss.backward()
                    recent.append(loss.detach() * settings.gradient_accumulation_steps)  # read once, at the end
                optimizer.step()
                step += 1
                stopping = distributed.any_rank(stop is not None and stop.set, ranks, device)
                if checkpoint is not None and (stopping or step % settings.checkpoint_every == 0):
                    _checkpoint(
                        model,
                        wrapped,
                        optimizer,
                        step,
                        epoch if index + 1 < optimizer_steps_per_epoch else epoch + 1,
                        checkpoint,
                        ranks,
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
        # A rerun after a later SIGTERM skips training.
        _checkpoint(model, wrapped, optimizer, step, settings.epochs, checkpoint, ranks)
    return {
        "steps": step,
        "resumed": resumed,
        "final_loss": float(torch.stack(list(recent)).float().mean()) if recent else None,
        "bf16": bf16,
        "seconds": round(time.monotonic() - started, 3),
        "workers": ranks.world,
        "strategy": ranks.strategy if ranks.active else None,
        "wrapped": wrapped,  # the module to evaluate and save through (FSDP's shards)
    }
