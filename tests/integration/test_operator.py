"""The operator (``relearn run``) against the control plane: every example
CR gets its conditions and observedGeneration; an invalid spec gets
``Ready=False, reason=InvalidSpec`` and a Warning Event, and the operator
goes on serving the others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, condition, wait_for

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "invoice-classifier"
GROUP, VERSION = "relearn.dev", "v1alpha1"
PLURALS = {"ModelVersion": "modelversions", "DriftPolicy": "driftpolicies", "ABExperiment": "abexperiments"}


@pytest.fixture
def operator(control_plane: ControlPlane, namespace: str, relearn_crds: None, tmp_path: Path) -> Iterator[str]:
    """``relearn run`` serving the test's namespace; yields the namespace."""
    process = start_operator(control_plane.kubeconfig, [namespace], tmp_path / "operator.log")
    yield namespace
    assert stop_operator(process) == 0, (tmp_path / "operator.log").read_text()


def apply(custom: client.CustomObjectsApi, namespace: str, doc: dict[str, Any]) -> None:
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[doc["kind"]], doc)


def settled(
    custom: client.CustomObjectsApi, namespace: str, kind: str, name: str, predicate: Any = None
) -> dict[str, Any]:
    def done(obj: dict[str, Any]) -> bool:
        status = obj.get("status") or {}
        return (
            obj["metadata"]["name"] == name
            and status.get("observedGeneration") == obj["metadata"]["generation"]
            and (predicate is None or predicate(obj))
        )

    return wait_for(
        custom.list_namespaced_custom_object,
        done,
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural=PLURALS[kind],
        timeout=30,
    )


def events_for(core: client.CoreV1Api, namespace: str, name: str) -> list[Any]:
    return [e for e in core.list_namespaced_event(namespace).items if e.involved_object.name == name]


def test_every_example_gets_conditions_and_observed_generation(operator: str, api_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api_client)
    docs = [
        yaml.safe_load((EXAMPLES / f).read_text())
        for f in ("modelversion-1.0.0.yaml", "modelversion-1.1.0.yaml", "driftpolicy.yaml", "abexperiment.yaml")
    ]
    for doc in docs:
        apply(custom, operator, doc)
    for doc in docs:
        obj = settled(custom, operator, doc["kind"], doc["metadata"]["name"], lambda o: condition(o, "Ready"))
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert ready["reason"] == "SpecAccepted"
        assert ready["observedGeneration"] == 1
    core = client.CoreV1Api(api_client)
    accepted = wait_for(
        core.list_namespaced_event,
        lambda e: e["reason"] == "SpecAccepted" and e["involvedObject"]["name"] == "invoice-classifier",
        namespace=operator,
    )
    assert accepted["message"] == "monitors model invoice-classifier: 2 features every 5m, retrains on drift"


def test_invalid_spec_is_reported_and_the_operator_keeps_serving(operator: str, api_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    # Admission allows descending steps; the operator's own check does not.
    bad = yaml.safe_load((EXAMPLES / "abexperiment.yaml").read_text())
    bad["metadata"]["name"] = "descending-steps"
    bad["spec"]["traffic"] = {"steps": [8, 4], "weight": 10}
    apply(custom, operator, bad)
    obj = settled(custom, operator, "ABExperiment", "descending-steps", lambda o: condition(o, "Ready", "False"))
    (ready,) = obj["status"]["conditions"]
    assert ready["reason"] == "InvalidSpec"
    assert ready["message"].startswith("spec.traffic.steps: steps must be strictly ascending")
    warning = wait_for(core.list_namespaced_event, lambda e: e["reason"] == "InvalidSpec", namespace=operator)
    assert warning["type"] == "Warning"

    good = yaml.safe_load((EXAMPLES / "modelversion-1.0.0.yaml").read_text())
    apply(custom, operator, good)
    settled(custom, operator, "ModelVersion", good["metadata"]["name"], lambda o: condition(o, "Ready"))

    # Fixing the spec makes it Ready, for the new generation.
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, operator, "abexperiments", "descending-steps", {"spec": {"traffic": {"steps": [4, 8]}}}
    )
    fixed = settled(custom, operator, "ABExperiment", "descending-steps", lambda o: condition(o, "Ready"))
    assert fixed["status"]["observedGeneration"] == 2
    assert [e.reason for e in events_for(core, operator, "descending-steps")].count("InvalidSpec") == 1


def reason_of(obj: dict[str, Any], type_: str) -> str | None:
    return next((c["reason"] for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)


def test_an_experiment_waiting_for_its_challenger_goes_on_when_the_version_is_registered(
    operator: str, api_client: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api_client)
    apply(custom, operator, yaml.safe_load((EXAMPLES / "modelversion-1.0.0.yaml").read_text()))
    abx = yaml.safe_load((EXAMPLES / "abexperiment.yaml").read_text())
    apply(custom, operator, abx)
    name = abx["metadata"]["name"]
    settled(custom, operator, "ABExperiment", name, lambda o: reason_of(o, "ChallengerReady") == "ModelVersionNotFound")

    # Registered right after the turn just seen: woken by the ModelVersion's
    # event, not by a poll (the old one looked 10 s after that turn, the safety
    # poll 60 s), the experiment says within seconds what is missing now.
    apply(custom, operator, yaml.safe_load((EXAMPLES / "modelversion-1.1.0.yaml").read_text()))
    moved = wait_for(
        custom.list_namespaced_custom_object,
        lambda o: (
            o["metadata"]["name"] == name and reason_of(o, "ChallengerReady") not in (None, "ModelVersionNotFound")
        ),
        group=GROUP,
        version=VERSION,
        namespace=operator,
        plural="abexperiments",
        timeout=8,
    )
    assert reason_of(moved, "ChallengerReady") == "WorkloadNotFound"
