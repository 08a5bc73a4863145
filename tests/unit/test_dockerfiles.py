"""The images build the way the chart and the Jobs expect: multi-stage,
pinned bases, non-root at run time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = ["Dockerfile.operator", "Dockerfile.trainer"]


def instructions(name: str) -> list[tuple[str, str]]:
    text = (REPO / name).read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_is_multi_stage_from_a_pinned_base(name: str) -> None:
    steps = instructions(name)
    args = dict(re.match(r"(\w+)=(\S+)", value).groups() for op, value in steps if op == "ARG" and "=" in value)  # type: ignore[union-attr]
    bases = [value.split()[0] for op, value in steps if op == "FROM"]
    assert len(bases) >= 2
    for base in bases:
        image = args.get(base.strip("${}"), base)
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image, image
        assert tag != "latest", image
        assert re.search(r"\d+\.\d+\.\d+", tag), f"{image} is not pinned to a patch release"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_non_root(name: str) -> None:
    steps = instructions(name)
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    users = [value for op, value in steps[last_from:] if op == "USER"]
    assert users, "final stage sets no USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_trainer_pins_torch_before_the_trainer_extra() -> None:
    runs = [value for op, value in instructions("Dockerfile.trainer") if op == "RUN"]
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    extra = next(i for i, r in enumerate(runs) if ".[trainer]" in r)
    assert torch < extra
