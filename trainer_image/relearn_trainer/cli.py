"""Command line of the trainer image.

    python -m relearn_trainer env     what this image can train on (JSON)

``env`` is the image's self-check: run it in a pod with a GPU to see that the
CUDA build of torch sees the device and whether bf16 is available.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Sequence
from typing import Any

from relearn_trainer import __version__


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m relearn_trainer", description="Relearn trainer image")
    parser.add_argument("--version", action="version", version=f"relearn_trainer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("env", help="print versions and accelerators as JSON")
    args = parser.parse_args(argv)
    if args.command == "env":
        report = describe_environment()
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 1 if "error" in report else 0
    return 2
