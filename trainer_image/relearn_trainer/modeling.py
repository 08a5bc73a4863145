"""Loading the base model, its tokenizer and an adapter, and wrapping the
model with LoRA (peft). Everything loads from a URI with
``local_files_only``: pods never download weights from a hub."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, PreTrainedModel

from relearn_trainer.tasks import TASKS, Task


class ModelError(Exception):
    """The base model or an adapter cannot be loaded."""


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()


def local_path(uri: str) -> str:
    """A local path for a URI (``file://`` and ``pvc://`` mounts; other
    schemes must be staged to a volume first)."""
    for prefix in ("file://", "pvc://"):
        if uri.startswith(prefix):
            return "/" + uri.removeprefix(prefix).lstrip("/")
    if "://" in uri:
        raise ModelError(f"{uri}: models load from a mounted path; stage remote models to a volume first")
    return uri


def base_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it: the base stays frozen under LoRA, so it needs
    no fp32 master copy (peft keeps the adapter's own weights in fp32)."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def load_base(uri: str, device: torch.device, task: Task | None = None) -> tuple[PreTrainedModel, Any]:
    path = local_path(uri)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = (task or TASKS["sequence-classification"]).load(path, base_dtype(device))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the base model from {uri}: {error}") from None
    return model.to(device), tokenizer


def with_adapter(model: PreTrainedModel, adapter_uri: str | None) -> Any:
    """The champion as served: base, plus its adapter when it has one."""
    if not adapter_uri:
        return model
    try:
        return PeftModel.from_pretrained(model, local_path(adapter_uri), is_trainable=False)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the adapter {adapter_uri}: {error}") from None


def add_lora(model: PreTrainedModel, settings: LoraSettings, task: Task | None = None) -> Any:
    config = LoraConfig(
        task_type=(task or TASKS["sequence-classification"]).peft_task,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules) or None,
    )
    return get_peft_model(model, config)
