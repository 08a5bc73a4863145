"""What a newcomer's shell has in a fresh clone: shared by the tests that run
the README's commands (test_demo.py, test_readme.py)."""

from __future__ import annotations

import os
from pathlib import Path


def clone_env(clone: Path) -> dict[str, str]:
    """The environment a newcomer's shell has in ``clone``: its code first, no make flags of ours."""
    env = {**os.environ, "PYTHONPATH": f"{clone / 'operator'}:{clone / 'trainer_image'}:{clone / 'sandbox'}"}
    env.pop("MAKEFLAGS", None)
    env.pop("KUBECONFIG", None)
    return env
