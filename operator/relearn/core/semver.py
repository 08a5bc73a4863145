"""Semantic versions of a model: ordering, and the next minor version a
retraining produces."""

from __future__ import annotations

import re
from collections.abc import Iterable

from relearn.api.base import SEMVER_PATTERN

_SEMVER = re.compile(SEMVER_PATTERN)


def parse(version: str) -> tuple[int, int, int, tuple[tuple[int, int | str], ...]]:
    """A sort key: release numbers, then pre-release (which sorts before the release)."""
    match = _SEMVER.fullmatch(version)
    if not match:
        raise ValueError(f"not a semantic version: {version!r}")
    core, _, rest = version.partition("+")[0].partition("-")
    major, minor, patch = (int(p) for p in core.split("."))
    pre: tuple[tuple[int, int | str], ...] = (
        tuple((0, int(p)) if p.isdigit() else (1, p) for p in rest.split(".")) if rest else ((2, ""),)
    )
    return major, minor, patch, pre


def next_minor(versions: Iterable[str]) -> str:
    """One minor version above the highest existing one (1.4.2 -> 1.5.0)."""
    known = [v for v in versions if _SEMVER.fullmatch(v)]
    if not known:
        return "0.1.0"
    major, minor, _, _ = parse(max(known, key=parse))
    return f"{major}.{minor + 1}.0"
