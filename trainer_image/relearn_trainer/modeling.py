"""Loading the base model, its tokenizer and an adapter, and wrapping the
model with LoRA (peft). Called by the pipeline (training) and the server.

Paths are resolved and checked before anything loads ("folder not found:
<absolute path>"), and everything loads with ``local_files_only``: only a
URI that says so (``hf://<repo id>``) may reach a model hub, and the CLI sets
``HF_HUB_OFFLINE`` otherwise. A base without a classification head (a
sentence-transformers checkpoint such as all-MiniLM-L6-v2) gets a fresh one
for the given labels, trained alongside LoRA and published in the adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoTokenizer, PreTrainedModel

from relearn_trainer.failures import ModelError
from relearn_trainer.tasks import TASKS, Task

__all__ = ["HUB_PREFIX", "LoraSettings", "ModelError", "add_lora", "load_base", "local_path", "with_adapter"]

HUB_PREFIX = "hf://"
Embeddings = Literal["none", "seen-tokens"]
# LoRA on every linear layer of the attention and the feed-forward blocks of
# the architectures the trainer knows; others get peft's choice.
DEFAULT_TARGETS = {
    "bert": ("query", "key", "value", "dense"),
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
}


@dataclass(frozen=True)
class LoraSettings:
    """``embeddings="seen-tokens"`` also trains the input embedding rows of
    every token in the training data (peft's ``trainable_token_indices``): the
    adapter then learns what drifted wording means (docs/retraining.md has the
    measurements) and stays small (only those rows are saved)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ()
    embeddings: Embeddings = "seen-tokens"


def local_path(uri: str) -> Path:
    """The absolute, existing folder for a URI (a plain path, relative to the
    working directory, or ``file://`` and ``pvc://`` mounts; other schemes must
    be staged to a volume first)."""
    path = uri
    for prefix in ("file://", "pvc://"):
        if uri.startswith(prefix):
            path = "/" + uri.removeprefix(prefix).lstrip("/")
            break
    else:
        if "://" in uri:
            raise ModelError(f"{uri}: models load from a mounted path; stage remote models to a volume first")
    if not path:
        raise ModelError("an empty model path")
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ModelError(f"folder not found: {resolved}" + (f" (from {uri!r})" if uri != str(resolved) else ""))
    return resolved


def _source(uri: str) -> tuple[str, bool]:
    """(what from_pretrained loads, whether it is a hub repo id)."""
    if uri.startswith(HUB_PREFIX):
        repo = uri.removeprefix(HUB_PREFIX).strip("/")
        if not repo:
            raise ModelError(f"{uri}: no repo id after {HUB_PREFIX}")
        return repo, True
    return str(local_path(uri)), False


def base_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU that has it: the base stays frozen under LoRA, so it needs
    no fp32 master copy (peft keeps the adapter's own weights in fp32)."""
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def load_base(
    uri: str, device: torch.device, task: Task | None = None, labels: Sequence[str] = ()
) -> tuple[PreTrainedModel, Any]:
    """The frozen base and its tokenizer; ``labels`` gives a base without a
    classification head a fresh one (random: seed first)."""
    source, hub = _source(uri)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=not hub)
        model = (task or TASKS["sequence-classification"]).load(source, base_dtype(device), labels, not hub)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the base model from {uri} ({source}): {error}") from None
    return model.to(device), tokenizer


def with_adapter(model: PreTrainedModel, adapter_uri: str | None) -> Any:
    """The champion as served: base, plus its adapter when it has one."""
    if not adapter_uri:
        return model
    path = local_path(adapter_uri)
    try:
        return PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelError(f"cannot load the adapter {adapter_uri} ({path}): {error}") from None


def seen_tokens(tokenizer: Any, texts: Iterable[str], max_length: int) -> list[int]:
    """Every token id the training texts use (special tokens included)."""
    seen: set[int] = set()
    for text in texts:
        seen.update(tokenizer(text, truncation=True, max_length=max_length)["input_ids"])
    return sorted(seen)


def add_lora(
    model: PreTrainedModel, settings: LoraSettings, task: Task | None = None, tokens: Sequence[int] = ()
) -> Any:
    """The base wrapped for training: LoRA on ``target_modules`` (default: the
    architecture's attention and feed-forward layers), the classification
    head trained in full (peft's default for sequence classification), and
    with ``embeddings="seen-tokens"`` the embedding rows of ``tokens``."""
    targets = list(settings.target_modules) or list(DEFAULT_TARGETS.get(model.config.model_type, ())) or None
    config = LoraConfig(
        task_type=(task or TASKS["sequence-classification"]).peft_task,
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        trainable_token_indices=list(tokens) if settings.embeddings == "seen-tokens" and tokens else None,
    )
    try:
        return get_peft_model(model, config)
    except ValueError as error:  # e.g. a target module the model does not have
        raise ModelError(f"cannot add LoRA to the base model: {error}") from None
