"""Labels the operator writes are valid on a real API server for every
spec-valid name and version: long experiment and policy names, semver build
metadata; the full value stays readable in an annotation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st
from relearn.api.base import MODEL_NAME_PATTERN, SEMVER_PATTERN
from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core import retraining, workloads
from relearn.core.jobs import training_job
from relearn.core.labels import label_value, labelled
from relearn.core.retraining import request_name

# The API server's rule for label values (apimachinery validation.IsValidLabelValue).
KUBERNETES_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
REPO = Path(__file__).resolve().parents[2]
EXAMPLE = yaml.safe_load((REPO / "examples/invoice-classifier/driftpolicy.yaml").read_text())
LONG_NAME = "invoice-classifier-for-the-accounts-payable-team-in-europe-and-north-america-v2"
BUILD_VERSION = "1.0.0+build.7"

object_names = st.from_regex(r"\A[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?\Z")
versions = st.from_regex(SEMVER_PATTERN.replace("^", r"\A").replace("$", r"\Z")).filter(lambda v: len(v) <= 63)


def label_values_are_valid(obj: dict[str, Any]) -> None:
    for labels in _all_labels(obj):
        for key, value in labels.items():
            assert len(value) <= 63, (key, value)
            assert KUBERNETES_LABEL_VALUE.fullmatch(value), (key, value)


def _all_labels(node: Any) -> list[dict[str, str]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if (key in ("labels", "matchLabels") and isinstance(value, dict)) or (
                key == "selector" and isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
            ):
                found.append(value)
            else:
                found += _all_labels(value)
    elif isinstance(node, list):
        for item in node:
            found += _all_labels(item)
    return found


@given(st.one_of(object_names, versions))
def test_every_spec_valid_name_and_version_gives_a_valid_label_value(value: str) -> None:
    label = label_value(value)
    assert len(label) <= 63
    assert KUBERNETES_LABEL_VALUE.fullmatch(label)
    if len(value) <= 63 and KUBERNETES_LABEL_VALUE.fullmatch(value):
        assert label == value  # what is valid already stays as it is


@given(st.lists(st.one_of(object_names, versions), min_size=2, max_size=2, unique=True))
def test_different_names_keep_different_labels(values: list[str]) -> None:
    first, second = values
    assert label_value(first) != label_value(second)


def test_the_full_value_is_kept_in_an_annotation() -> None:
    labels, annotations = labelled({"relearn.dev/version": BUILD_VERSION, "relearn.dev/model": "docs"})
    assert labels == {"relearn.dev/version": "1.0.0_build.7", "relearn.dev/model": "docs"}
    assert annotations == {"relearn.dev/version": BUILD_VERSION}


def test_a_long_policy_name_makes_a_valid_job_and_model_version() -> None:
    spec = DriftPolicySpec.model_validate(EXAMPLE["spec"])
    name = request_name(LONG_NAME, "uid-1", 3)
    assert len(name) <= 63
    assert re.fullmatch(MODEL_NAME_PATTERN, name)
    job = training_job(
        "Job",
        name=name,
        namespace="ml",
        policy_name=LONG_NAME,
        policy_uid="uid-1",
        spec=spec,
        version="1.1.0",
        base_model_uri="/m",
        champion=None,
    )
    label_values_are_valid(job)
    assert job["metadata"]["annotations"]["relearn.dev/policy"] == LONG_NAME
    record = retraining.RetrainingRecord(job=name, outcome="Running")
    result = retraining.TrainerResult("/out", "a" * 64, {"accuracy": 0.9}, {}, None)
    version = retraining.model_version(
        name="docs-1.1.0",
        spec=spec,
        version="1.1.0",
        base_model_uri="/m",
        result=result,
        record=record,
        policy_name=LONG_NAME,
        parent=None,
    )
    label_values_are_valid(version)


def test_an_experiment_with_a_long_name_and_a_build_version_makes_a_valid_challenger() -> None:
    champion = {
        "metadata": {"name": "docs", "labels": {"app": "docs"}},
        "spec": {
            "selector": {"matchLabels": {"app": "docs"}},
            "template": {
                "metadata": {"labels": {"app": "docs", "relearn.dev/version": "1.0.0"}},
                "spec": {"containers": [{"name": "server", "image": "docs:1"}]},
            },
        },
    }
    experiment = {"metadata": {"name": f"{LONG_NAME}-{BUILD_VERSION}", "uid": "u1"}}
    deployment = workloads.challenger_deployment(
        champion,
        name=workloads.workload_name("docs", BUILD_VERSION),
        model="docs",
        version=BUILD_VERSION,
        version_env="MODEL_VERSION",
        adapter=None,
        experiment=experiment,
        replicas=1,
    )
    label_values_are_valid(deployment)
    assert deployment["metadata"]["annotations"]["relearn.dev/version"] == BUILD_VERSION
    pods = workloads.pod_labels(deployment)
    assert pods["relearn.dev/version"] == workloads.version_label(BUILD_VERSION)
    service = workloads.challenger_service(
        {"metadata": {"name": "docs"}, "spec": {"selector": {"app": "docs"}, "ports": [{"port": 80}]}},
        name="docs-1-0-0-build-7",
        version=BUILD_VERSION,
        experiment=experiment,
    )
    label_values_are_valid(service)
    assert workloads.selects(service["spec"]["selector"], pods)
