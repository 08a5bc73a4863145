"""Command line of the trainer image.

    python -m relearn_trainer train --model M --version V --dataset URI --base-model URI --output URI ...
    python -m relearn_trainer serve              the reference model server (RELEARN_* variables)
    python -m relearn_trainer tiny-model DIR     a tiny classifier for tests and the demo (no download)
    python -m relearn_trainer env                what this image can train on (JSON)

``train`` prints its result as JSON and writes it (4 KiB at most) to the
termination-message file; every failure exits with its code from
:mod:`relearn_trainer.failures` (2 data, 3 model, 4 an adapter that fails
verification, 5 output, 64 usage, 143 SIGTERM, 1 a bug) and writes
``{"error", "message"}`` there too, cut to 4096 bytes after JSON encoding.
No command reaches a model hub unless a model URI says ``hf://``:
``HF_HUB_OFFLINE`` is set otherwise.
``env`` is the image's self-check: run it in a pod with a GPU to see that the
CUDA build of torch sees the device and whether bf16 is available.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from relearn_trainer import __version__
from relearn_trainer.failures import StopFlag, TrainerFailure, UsageError


def describe_environment() -> dict[str, Any]:
    """Versions and accelerators as torch sees them; explains a missing extra."""
    report: dict[str, Any] = {"relearn_trainer": __version__, "python": platform.python_version()}
    try:
        import torch
    except ImportError:
        report["error"] = "torch is not installed: pip install 'relearn-operator[trainer]'"
        return report
    cuda = torch.cuda.is_available()
    report.update(
        torch=torch.__version__,
        cuda_build=torch.version.cuda,
        cuda_available=cuda,
        devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
    )
    for package in ("transformers", "peft", "safetensors"):
        try:
            report[package] = __import__(package).__version__
        except ImportError:
            report[package] = None
    return report


class _Parser(argparse.ArgumentParser):
    """Bad arguments are a UsageError (exit 64, with a termination message), not argparse's exit 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m relearn_trainer", description="Relearn trainer image")
    parser.add_argument("--version", action="version", version=f"relearn_trainer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help="print versions and accelerators as JSON")

    train = commands.add_parser("train", help="LoRA-train a new version on recent corrections and pseudo-labels")
    train.add_argument("--model", required=True, help="logical model name")
    train.add_argument("--model-version", required=True, help="semver of the version to produce")
    train.add_argument("--dataset", required=True, help="dataset URI (JSONL file or folder)")
    train.add_argument("--base-model", required=True, help="base model folder (path, file:// or pvc://)")
    train.add_argument(
        "--task",
        choices=["sequence-classification", "causal-lm"],
        default="sequence-classification",
        help="how the base model is loaded and asked (ModelVersion baseModel.task)",
    )
    train.add_argument("--champion-adapter", help="the champion's adapter, to evaluate it on the same split")
    train.add_argument("--output", required=True, help="where versions are published (fsspec URI)")
    train.add_argument("--lookback", default="30d", help="use data this recent (default %(default)s)")
    train.add_argument("--pseudo-label-confidence", type=float, default=0.9)
    train.add_argument("--eval-fraction", type=float, default=0.2)
    train.add_argument("--min-samples", type=int, default=50, help="fewer usable examples is an error")
    train.add_argument("--lora-r", type=int, default=8)
    train.add_argument("--lora-alpha", type=int, default=16)
    train.add_argument("--lora-dropout", type=float, default=0.05)
    train.add_argument(
        "--target-modules",
        default="",
        help="comma-separated; empty: the trainer's default (every attention and feed-forward linear layer)",
    )
    train.add_argument(
        "--embeddings",
        choices=["seen-tokens", "none"],
        default="seen-tokens",
        help="also train the embedding rows of the tokens in the data, to learn new wording (default %(default)s)",
    )
    train.add_argument(
        "--labels",
        default="",
        help="comma-separated classes, for a base without a classification head (default: the champion's)",
    )
    train.add_argument("--epochs", type=int, default=3)
    train.add_argument("--learning-rate", type=float, default=2e-4)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--gradient-accumulation-steps", type=int, default=1)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--checkpoint-dir", type=Path, help="checkpoints, for resuming (default: none)")
    train.add_argument("--checkpoint-every", type=int, default=50, help="optimizer steps between checkpoints")
    train.add_argument("--baseline-edges", help="JSON {feature: [edges]}: the metric contract's bucket edges")
    train.add_argument(
        "--strategy",
        choices=["ddp", "fsdp"],
        default="ddp",
        help="under torchrun: ddp replicates the model on every process, fsdp shards it (default %(default)s)",
    )

    serve = commands.add_parser("serve", help="the reference model server (configured by RELEARN_* variables)")
    serve.add_argument("--model", help="overrides RELEARN_MODEL")
    serve.add_argument("--model-version", help="overrides RELEARN_MODEL_VERSION")
    serve.add_argument("--base-model", help="overrides RELEARN_BASE_MODEL_URI")
    serve.add_argument("--adapter", help="overrides RELEARN_ADAPTER_URI")
    serve.add_argument("--adapter-sha256", help="overrides RELEARN_ADAPTER_SHA256")
    serve.add_argument(
        "--allow-unverified-adapter",
        action="store_true",
        default=None,
        help="local development only: serve an adapter without a sha256 to check "
        "(RELEARN_ALLOW_UNVERIFIED_ADAPTER=true)",
    )
    serve.add_argument("--dataset", help="overrides RELEARN_DATASET_URI")
    serve.add_argument("--port", type=int, help="overrides PORT (default 8080)")

    tiny = commands.add_parser("tiny-model", help="write a tiny document classifier and datasets (tests, demo)")
    tiny.add_argument("directory", type=Path)

    traffic = commands.add_parser("traffic", help="send the tiny model's documents and human feedback (e2e, demo)")
    traffic.add_argument("--url", required=True, help="the model server or gateway, e.g. http://documents")
    traffic.add_argument("--host", help="Host header (a gateway route's hostname)")
    traffic.add_argument("--clean-seconds", type=float, default=60.0, help="unchanged documents first (default 60)")
    traffic.add_argument("--seconds", type=float, default=3600.0, help="then drifted documents until this total")
    traffic.add_argument("--rate", type=float, help="documents per second at most (default: as fast as answered)")
    return parser


def _train(args: argparse.Namespace, stop: StopFlag) -> int:
    stop.stage = "checking the arguments"
    from relearn.core.durations import parse_duration

    try:  # before torch and transformers load: a usage error is told at once
        lookback = parse_duration(args.lookback)
        edges = json.loads(args.baseline_edges) if args.baseline_edges else None
    except ValueError as error:
        raise UsageError(f"--lookback or --baseline-edges: {error}") from None
    if edges is not None and not isinstance(edges, dict):
        raise UsageError("--baseline-edges must be a JSON object {feature: [edges]}")
    stop.stage = "loading the trainer"
    from relearn_trainer.modeling import LoraSettings
    from relearn_trainer.pipeline import TrainRequest, run
    from relearn_trainer.publishing import compact, write_termination_message
    from relearn_trainer.training import TrainSettings

    request = TrainRequest(
        model=args.model,
        version=args.model_version,
        dataset_uri=args.dataset,
        base_model_uri=args.base_model,
        output_uri=args.output,
        task=args.task,
        champion_adapter_uri=args.champion_adapter,
        lookback=lookback,
        pseudo_label_confidence=args.pseudo_label_confidence,
        eval_fraction=args.eval_fraction,
        min_samples=args.min_samples,
        lora=LoraSettings(
            args.lora_r,
            args.lora_alpha,
            args.lora_dropout,
            tuple(m for m in args.target_modules.split(",") if m),
            args.embeddings,
        ),
        settings=TrainSettings(
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            gradient_accumulation_steps=args.gradient_accumulation_steps,
            seed=args.seed,
            checkpoint_every=args.checkpoint_every,
        ),
        checkpoint_dir=args.checkpoint_dir,
        strategy=args.strategy,
        baseline_edges=edges,
        labels=tuple(label for label in args.labels.split(",") if label),
    )
    result = run(request, stop=stop)
    if result is None:  # a rank other than 0 under torchrun: rank 0 published and reports
        print(json.dumps({"rank": int(os.environ.get("RANK", "0")), "publishedBy": 0}))
        return 0
    stop.stage = "reporting"
    stop.saved = f"the version was published ({result['uri']}) but the result may not have been reported"
    text = compact(result)
    write_termination_message(text)
    print(text)
    return 0


def _failed(reason: str, message: str, code: int) -> int:
    """The termination message and stderr line of a failure; its exit code."""
    from relearn_trainer.publishing import failure_message, write_termination_message

    write_termination_message(failure_message(reason, message))
    print(f"relearn_trainer: {reason}: {message}", file=sys.stderr)
    return code


def _offline(args: argparse.Namespace) -> None:
    """No hub unless a model URI says hf:// (set before transformers is imported)."""
    from relearn_trainer.modeling import HUB_PREFIX

    uris = [getattr(args, name, None) for name in ("base_model", "champion_adapter", "adapter")]
    uris.append(os.environ.get("RELEARN_BASE_MODEL_URI") if args.command == "serve" else None)
    if any(uri and uri.startswith(HUB_PREFIX) for uri in uris):
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ.pop("TRANSFORMERS_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"


def _traffic(args: argparse.Namespace) -> int:
    import time

    from relearn_trainer.synthetic import Traffic

    started = time.monotonic()
    with Traffic(args.url, host=args.host, rate=args.rate) as traffic:
        while (elapsed := time.monotonic() - started) < args.seconds:
            if not traffic.drifted and elapsed >= args.clean_seconds:
                traffic.drifted = True
                print(json.dumps({"drifted": True, "sent": traffic.sent}), flush=True)
            time.sleep(1.0)
    print(json.dumps({"sent": traffic.sent, "corrections": traffic.corrections, "failed": traffic.failed}))
    return 0


def _tiny_model(directory: Path) -> int:
    from relearn_trainer import synthetic

    base, dataset = synthetic.workspace(directory)
    print(json.dumps({"baseModel": str(base), "dataset": str(dataset)}))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; every failure becomes its documented exit code and termination message."""
    with StopFlag() as stop:  # from the first line: a SIGTERM at any stage says where it came
        try:
            args = build_parser().parse_args(argv)
            _offline(args)
            return _dispatch(args, stop)
        except TrainerFailure as error:
            return _failed(error.reason, str(error), error.code)
        except Exception as error:  # a bug: still a reason, an exit code and a message, and the traceback
            traceback.print_exc()
            return _failed("InternalError", f"{type(error).__name__}: {error}", 1)


def _dispatch(args: argparse.Namespace, stop: StopFlag) -> int:
    if args.command == "env":
        report = describe_environment()
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 1 if "error" in report else 0
    if args.command == "train":
        return _train(args, stop)
    if args.command == "serve":
        # Once serving, aiohttp's own SIGTERM handler stops it gracefully (exit 0).
        stop.stage, stop.saved = "starting the model server", "it never served"
        return _serve(args)
    if args.command == "traffic":
        stop.stage, stop.saved = "sending traffic", "stopped"
        return _traffic(args)
    stop.stage, stop.saved = "writing the tiny model", "it may be incomplete"
    return _tiny_model(args.directory)


def _serve(args: argparse.Namespace) -> int:
    from relearn_trainer.serve import ServerConfig, serve

    config = ServerConfig.from_environment(
        model=args.model,
        version=args.model_version,
        base_model_uri=args.base_model,
        adapter_uri=args.adapter,
        adapter_sha256=args.adapter_sha256,
        allow_unverified_adapter=args.allow_unverified_adapter,
        dataset_uri=args.dataset,
        port=args.port,
    )
    serve(config)
    return 0
