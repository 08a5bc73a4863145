"""The end-to-end suite's manifests are valid, checked here without a
cluster: built-in kinds against the Kubernetes schemas, Relearn kinds against
the CRDs and the operator's own checks."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from relearn.api import KINDS
from relearn.api.schema import validate_object
from relearn.core.spec_check import check_spec

MANIFESTS = Path(__file__).resolve().parent / "manifests"
WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "e2e-kind.yaml"


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(MANIFESTS.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


@pytest.mark.parametrize(
    ("source", "doc"), documents(), ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"]
)
def test_manifest_is_valid(source: str, doc: dict[str, Any]) -> None:
    kinds = {k.kind: k for k in KINDS}
    if doc["apiVersion"].startswith("relearn.dev/"):
        assert validate_object(doc) == []
        verdict = check_spec(kinds[doc["kind"]], {**doc, "status": {}}, now=datetime.datetime.now(datetime.UTC))
        assert verdict.valid, verdict.errors
    else:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)


def test_the_loop_uses_the_images_the_suite_builds() -> None:
    images = {
        c["image"]
        for _, d in documents()
        if d["kind"] in ("Deployment", "Job")
        for c in d["spec"]["template"]["spec"]["containers"]
        if "relearn" in c["image"]
    }
    assert images == {"relearn-trainer:e2e"}
    (policy,) = (d for _, d in documents() if d["kind"] == "DriftPolicy")
    assert policy["spec"]["retraining"]["image"] == "relearn-trainer:e2e"


def test_ci_workflow_runs_the_suite_on_kind() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    commands = " ".join(s.get("run", "") for s in steps)
    assert any("kind" in str(s.get("uses", "")) for s in steps) or "kind create cluster" in commands
    assert "pytest tests/e2e" in commands
    assert "RELEARN_E2E_KUBECONFIG" in commands or "RELEARN_E2E_KUBECONFIG" in str(workflow)
