"""What the model does with a document, per ``baseModel.task``.

- ``sequence-classification``: a classification head (AutoModelForSequenceClassification);
  the labels are the model's ``label2id``, or for a base without a head the
  labels it is given (a fresh head, trained with the adapter).
- ``causal-lm``: a language model (AutoModelForCausalLM) asked
  ``"<document>\\nLabel:"``; trained on the label's tokens after that prompt
  (the prompt itself is not in the loss), and it predicts the label whose
  tokens it finds most likely. The labels are those in the data.

Both give training a loss and evaluation and serving one score per label,
so the loop, the metrics and the server are the same for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from peft import TaskType
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification


@dataclass(frozen=True)
class Reader:
    """A model reading documents, the same for every batch of a run: its
    tokenizer, the task's label ids, the device, and the most tokens a
    document keeps."""

    model: Any
    tokenizer: Any
    label_ids: dict[str, int]
    device: torch.device
    max_length: int


class Task(Protocol):
    name: str
    peft_task: TaskType

    def load(self, source: str, dtype: torch.dtype, labels: Sequence[str], local_files_only: bool) -> Any: ...

    def labels(self, model: Any, seen: Sequence[str]) -> dict[str, int]: ...

    def loss(self, reader: Reader, texts: Sequence[str], labels: Sequence[str]) -> torch.Tensor: ...

    def scores(self, reader: Reader, texts: Sequence[str]) -> torch.Tensor: ...


class SequenceClassification:
    name = "sequence-classification"
    peft_task = TaskType.SEQ_CLS

    def load(self, source: str, dtype: torch.dtype, labels: Sequence[str], local_files_only: bool) -> Any:
        """The base with its head; ``labels`` checks that head, or gives a base
        without one (an encoder such as a sentence-transformers checkpoint) a
        fresh head for them."""
        config = AutoConfig.from_pretrained(source, local_files_only=local_files_only)
        has_head = any(name.endswith("ForSequenceClassification") for name in config.architectures or ())
        if has_head:
            if labels and set(labels) != set(config.label2id or {}):
                raise ValueError(
                    f"its classification head knows {sorted(config.label2id or {})}, not the labels {sorted(labels)}"
                )
            return AutoModelForSequenceClassification.from_pretrained(
                source, local_files_only=local_files_only, dtype=dtype
            )
        if not labels:
            raise ValueError(
                "it has no classification head (architectures "
                f"{config.architectures}): give the labels (--labels, or the adapter's labels.json) for a fresh one"
            )
        return AutoModelForSequenceClassification.from_pretrained(
            source,
            local_files_only=local_files_only,
            dtype=dtype,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        )

    def labels(self, model: Any, seen: Sequence[str]) -> dict[str, int]:
        return {str(k): int(v) for k, v in (model.config.label2id or {}).items()}

    def _encode(self, reader: Reader, texts: Sequence[str]) -> Any:
        encoded = reader.tokenizer(
            list(texts), padding=True, truncation=True, max_length=reader.max_length, return_tensors="pt"
        )
        return encoded.to(reader.device)

    def loss(self, reader: Reader, texts: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
        target = torch.tensor([reader.label_ids[label] for label in labels]).to(reader.device, non_blocking=True)
        loss: torch.Tensor = reader.model(**self._encode(reader, texts), labels=target).loss
        return loss

    def scores(self, reader: Reader, texts: Sequence[str]) -> torch.Tensor:
        logits: torch.Tensor = reader.model(**self._encode(reader, texts)).logits
        return logits.float()


class CausalLM:
    name = "causal-lm"
    peft_task = TaskType.CAUSAL_LM
    PROMPT = "{text}\nLabel:"

    def load(self, source: str, dtype: torch.dtype, labels: Sequence[str], local_files_only: bool) -> Any:
        return AutoModelForCausalLM.from_pretrained(source, local_files_only=local_files_only, dtype=dtype)

    def labels(self, model: Any, seen: Sequence[str]) -> dict[str, int]:
        return {label: i for i, label in enumerate(sorted(set(seen)))}

    def _pairs(
        self, reader: Reader, texts: Sequence[str], labels: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input ids, attention mask, and targets (-100 but on the label's tokens)."""
        tokenizer, max_length = reader.tokenizer, reader.max_length
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0
        rows = []
        for text, label in zip(texts, labels, strict=True):
            label_tokens = tokenizer(" " + label, add_special_tokens=False)["input_ids"]
            prompt = tokenizer(self.PROMPT.format(text=text), add_special_tokens=False)["input_ids"]
            prompt = prompt[-max(1, max_length - len(label_tokens)) :]
            rows.append((prompt + label_tokens, [-100] * len(prompt) + label_tokens))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), pad)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        target = torch.full((len(rows), width), -100)
        for row, (tokens, wanted) in enumerate(rows):
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
            target[row, : len(wanted)] = torch.tensor(wanted)
        return ids.to(reader.device), mask.to(reader.device), target.to(reader.device)

    def _label_log_likelihood(
        self, model: Any, ids: torch.Tensor, mask: torch.Tensor, target: torch.Tensor
    ) -> torch.Tensor:
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        wanted = target[:, 1:]
        log_probs = torch.log_softmax(logits, dim=-1).gather(-1, wanted.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return (log_probs * (wanted != -100)).sum(dim=-1)

    def loss(self, reader: Reader, texts: Sequence[str], labels: Sequence[str]) -> torch.Tensor:
        ids, mask, target = self._pairs(reader, texts, labels)
        loss: torch.Tensor = reader.model(input_ids=ids, attention_mask=mask, labels=target).loss
        return loss

    def scores(self, reader: Reader, texts: Sequence[str]) -> torch.Tensor:
        """Log-likelihood of every label after every document: [documents, labels]."""
        names = sorted(reader.label_ids, key=reader.label_ids.__getitem__)
        ids, mask, target = self._pairs(reader, [t for t in texts for _ in names], names * len(texts))
        return self._label_log_likelihood(reader.model, ids, mask, target).view(len(texts), len(names))


TASKS: dict[str, Task] = {task.name: task for task in (SequenceClassification(), CausalLM())}
