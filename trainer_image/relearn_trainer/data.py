"""Training data from what the model served and what humans corrected.

A dataset URI (a local path, ``pvc://`` mount path, or any fsspec URI such as
``s3://`` when its filesystem is installed) holds JSON lines, in one file or
a folder of ``*.jsonl``:

    {"kind": "prediction", "input": "...", "prediction": "invoice", "confidence": 0.97,
     "version": "1.0.0", "timestamp": "2026-11-26T10:00:00Z", "features": {"length": 42}}
    {"kind": "correction", "input": "...", "label": "credit_memo", "timestamp": "..."}

:func:`assemble` keeps every correction, keeps a prediction as a pseudo-label
only when its confidence reaches the threshold, only within the lookback, and
one example per input (a correction beats a pseudo-label; the latest wins
among equals). The train/eval split is fixed by a hash of the input, so an
example never changes side between runs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import fsspec

Source = Literal["correction", "pseudo-label"]


class DatasetError(Exception):
    """The dataset cannot give a training run (missing, unreadable, too small)."""


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: Source
    timestamp: datetime.datetime
    features: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


@dataclass(frozen=True)
class Assembled:
    train: list[Example]
    eval: list[Example]
    report: dict[str, Any]


def _parse_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def read_records(uri: str) -> Iterator[dict[str, Any]]:
    """Every JSON line under ``uri`` (a file, or a folder of *.jsonl)."""
    protocol, _, path = uri.rpartition("://")
    fs = fsspec.filesystem(protocol or "file")
    if not fs.exists(path):
        raise DatasetError(f"dataset {uri} does not exist")
    files = sorted(fs.glob(f"{path.rstrip('/')}/**/*.jsonl")) if fs.isdir(path) else [path]
    if not files:
        raise DatasetError(f"dataset {uri} holds no *.jsonl files")
    for file in files:
        with fs.open(file, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except ValueError as error:
                    raise DatasetError(f"{file}:{number}: not JSON: {error}") from None


def _examples(records: Iterable[dict[str, Any]], since: datetime.datetime, confidence: float) -> Iterator[Example]:
    for record in records:
        try:
            stamp = _parse_time(record["timestamp"])
            text = record["input"] if isinstance(record["input"], str) else json.dumps(record["input"], sort_keys=True)
        except (KeyError, TypeError, ValueError):
            continue  # a record without input or time cannot be placed in the window
        if stamp < since:
            continue
        features = dict(record.get("features") or {})
        if record.get("kind") == "correction" and record.get("label") is not None:
            yield Example(text, str(record["label"]), "correction", stamp, features)
        elif (
            record.get("kind") == "prediction"
            and record.get("prediction") is not None
            and float(record.get("confidence", 0.0)) >= confidence
        ):
            yield Example(text, str(record["prediction"]), "pseudo-label", stamp, features)


def deduplicate(examples: Iterable[Example]) -> list[Example]:
    best: dict[str, Example] = {}
    for example in examples:
        kept = best.get(example.key)
        rank = (example.source == "correction", example.timestamp)
        if kept is None or rank > (kept.source == "correction", kept.timestamp):
            best[example.key] = example
    return sorted(best.values(), key=lambda e: e.key)


def in_eval(example: Example, fraction: float) -> bool:
    return int(example.key[:8], 16) / 0xFFFFFFFF < fraction


def assemble(
    uri: str,
    *,
    now: datetime.datetime,
    lookback: datetime.timedelta,
    confidence: float = 0.9,
    eval_fraction: float = 0.2,
    min_samples: int = 50,
) -> Assembled:
    examples = deduplicate(_examples(read_records(uri), now - lookback, confidence))
    if len(examples) < min_samples:
        raise DatasetError(
            f"only {len(examples)} usable examples in {uri} within {lookback} "
            f"(at least {min_samples} needed): not training a model on too little data"
        )
    train = [e for e in examples if not in_eval(e, eval_fraction)]
    held_out = [e for e in examples if in_eval(e, eval_fraction)]
    if not train or not held_out:
        raise DatasetError(f"{len(examples)} examples do not split into train and eval sets")
    report = {
        "examples": len(examples),
        "train": len(train),
        "eval": len(held_out),
        "bySource": dict(Counter(e.source for e in examples)),
        "byClass": dict(sorted(Counter(e.label for e in examples).items())),
        "window": {"start": (now - lookback).isoformat(), "end": now.isoformat()},
    }
    return Assembled(train, held_out, report)
