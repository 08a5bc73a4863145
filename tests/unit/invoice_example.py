"""The invoice-classifier example (examples/invoice-classifier) as the unit
tests of its retraining Job read it: the policy, its champion, and the Job
built from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core.jobs import TrainingKind, training_job

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "examples/invoice-classifier/driftpolicy.yaml").read_text())
CHAMPION = yaml.safe_load((REPO / "examples/invoice-classifier/modelversion-1.0.0.yaml").read_text())


def example_job(
    spec: DriftPolicySpec | None = None,
    kind: TrainingKind = "Job",
    *,
    name: str = "invoice-classifier-rt-1a2b3c4d",
    base_model_uri: str = "/models/base/invoice-classifier",
) -> dict[str, Any]:
    """The request's ``kind`` of the example policy (or ``spec``), version 1.1.0 after its champion."""
    return training_job(
        kind,
        name=name,
        namespace="ml-prod",
        policy_name="invoice-classifier",
        policy_uid="uid-1",
        spec=spec or DriftPolicySpec.model_validate(EXAMPLE["spec"]),
        version="1.1.0",
        base_model_uri=base_model_uri,
        champion=CHAMPION,
    )
