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
example never changes side between runs; the held-out corrections are what
the offline gate compares on, the held-out pseudo-labels are kept apart.
A prediction whose ``confidence`` is absent or null is never a pseudo-label;
a ``features`` value that is not an object is an error naming its line.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import fsspec

from relearn_trainer.failures import DatasetError

__all__ = ["Assembled", "DatasetError", "Example", "assemble", "in_eval", "read_records"]

Source = Literal["correction", "pseudo-label"]


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
    """The training examples, and the held-out ones by source: the gate
    compares on human corrections only (``eval``); held-out pseudo-labels
    (``eval_pseudo``) are the models' own confident predictions, reported apart."""

    train: list[Example]
    eval: list[Example]
    report: dict[str, Any]
    eval_pseudo: list[Example] = field(default_factory=list)


def _parse_time(text: str) -> datetime.datetime:
    moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def _local(uri: str) -> tuple[str, str]:
    """(fsspec protocol, path): local paths (plain, ``file://``, ``pvc://``) resolved to absolute ones."""
    protocol, _, path = uri.rpartition("://")
    if protocol in ("", "file", "pvc"):
        return "file", str(Path("/" + path.lstrip("/") if protocol else path).expanduser().resolve())
    return protocol, path


def read_records(uri: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every JSON line under ``uri`` (a file, or a folder of *.jsonl), with where it is (``file:line``)."""
    protocol, path = _local(uri)
    try:
        fs = fsspec.filesystem(protocol)
        if not fs.exists(path):
            raise DatasetError(f"dataset not found: {path}" + (f" (from {uri!r})" if uri != path else ""))
        files = sorted(fs.glob(f"{path.rstrip('/')}/**/*.jsonl")) if fs.isdir(path) else [path]
    except (OSError, ValueError, ImportError) as error:
        raise DatasetError(f"dataset {uri} cannot be listed: {error}") from None
    if not files:
        raise DatasetError(f"dataset {uri} ({path}) holds no *.jsonl files")
    for file in files:
        try:
            with fs.open(file, "rt", encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except ValueError as error:
                        raise DatasetError(f"{file}:{number}: not JSON: {error}") from None
                    if not isinstance(record, dict):
                        raise DatasetError(f"{file}:{number}: a record must be a JSON object, not {_kind(record)}")
                    yield f"{file}:{number}", record
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(f"{file}: unreadable: {error}") from None


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _features(where: str, value: Any) -> dict[str, Any]:
    """A record's features: an object of name -> number or category (the drift baseline's input)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DatasetError(f'{where}: "features" must be an object of name: value, not {_kind(value)}')
    return dict(value)


def _confidence(where: str, value: Any) -> float:
    """A prediction's confidence; none (absent or null) is no confidence at all, so never a pseudo-label."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f'{where}: "confidence" must be a number or null, not {_kind(value)}')
    return float(value)


def _examples(
    records: Iterable[tuple[str, dict[str, Any]]], since: datetime.datetime, confidence: float
) -> Iterator[Example]:
    for where, record in records:
        try:
            stamp = _parse_time(record["timestamp"])
            text = record["input"] if isinstance(record["input"], str) else json.dumps(record["input"], sort_keys=True)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a record without input or time cannot be placed in the window
        if stamp < since:
            continue
        if record.get("kind") == "correction" and record.get("label") is not None:
            yield Example(text, str(record["label"]), "correction", stamp, _features(where, record.get("features")))
        elif (
            record.get("kind") == "prediction"
            and record.get("prediction") is not None
            and _confidence(where, record.get("confidence")) >= confidence
        ):
            yield Example(
                text, str(record["prediction"]), "pseudo-label", stamp, _features(where, record.get("features"))
            )


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
    held_out = [e for e in examples if in_eval(e, eval_fraction) and e.source == "correction"]
    held_out_pseudo = [e for e in examples if in_eval(e, eval_fraction) and e.source == "pseudo-label"]
    if not train:
        raise DatasetError(f"{len(examples)} examples leave nothing to train on after the eval split")
    if not held_out:
        raise DatasetError(
            f"no human correction among the {len(held_out_pseudo)} held-out examples: the offline gate compares "
            "on corrections only, never on the models' own predictions"
        )
    report = {
        "examples": len(examples),
        "train": len(train),
        "eval": len(held_out),
        "evalPseudoLabels": len(held_out_pseudo),
        "bySource": dict(Counter(e.source for e in examples)),
        "byClass": dict(sorted(Counter(e.label for e in examples).items())),
        "window": {"start": (now - lookback).isoformat(), "end": now.isoformat()},
    }
    return Assembled(train, held_out, report, held_out_pseudo)
