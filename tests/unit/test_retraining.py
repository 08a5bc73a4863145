"""The retraining Job the operator builds, and its reading of the outcome."""

from __future__ import annotations

import datetime
import json

import kubernetes_validate
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from invoice_example import EXAMPLE, example_job
from relearn.api.abexperiment import ExperimentTemplate
from relearn.api.driftpolicy import DriftPolicySpec, RetrainingRecord
from relearn.api.modelversion import ModelVersionSpec
from relearn.core import retraining, semver
from relearn.core.jobs import cpu_threads


@pytest.mark.parametrize("k8s", ["1.30.0", "1.33.0"])
def test_job_manifest_passes_kubernetes_validation(k8s: str) -> None:
    kubernetes_validate.validate(example_job(), k8s, strict=True)


def test_job_requests_the_gpu_and_scheduling_as_configured() -> None:
    manifest = example_job()
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert manifest["spec"]["activeDeadlineSeconds"] == 8 * 3600
    assert manifest["spec"]["backoffLimit"] == 2
    assert manifest["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"] == [
        {"type": "DisruptionTarget", "status": "True"}
    ]
    assert manifest["metadata"]["ownerReferences"][0]["kind"] == "DriftPolicy"
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"][1:])
    assert (args["model-version"], args["lora-r"], args["target-modules"]) == ("1.1.0", "8", "query,value")
    assert args["task"] == "sequence-classification"  # the champion's baseModel.task
    assert json.loads(args["baseline-edges"]) == {"amount": [10, 50, 100, 500, 1000, 5000]}
    assert args["checkpoint-dir"] == "/models/adapters/invoice-classifier/.checkpoints/invoice-classifier-rt-1a2b3c4d"
    # the claims the paths live on are mounted
    assert pod["volumes"] == [
        {"name": "models", "persistentVolumeClaim": {"claimName": "relearn-models", "readOnly": False}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "relearn-data", "readOnly": True}},
    ]
    assert container["volumeMounts"] == [
        {"name": "models", "mountPath": "/models", "readOnly": False},
        {"name": "data", "mountPath": "/data", "readOnly": True},
    ]


def test_next_minor_version() -> None:
    assert semver.next_minor(["1.0.0", "1.4.2", "1.10.0-rc.1", "0.9.0"]) == "1.11.0"
    assert semver.next_minor([]) == "0.1.0"
    assert semver.parse("1.0.0-rc.1") < semver.parse("1.0.0")


def test_job_states() -> None:
    assert retraining.job_state({"status": {"active": 1}}) == ("Running", "")
    assert retraining.job_state({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] == "Succeeded"
    failed = {
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        }
    }
    assert retraining.job_state(failed) == (
        "Failed",
        "BackoffLimitExceeded: Job has reached the specified backoff limit",
    )


def pod(message: str, finished: str = "2026-11-26T10:00:00Z", code: int = 0) -> dict:
    return {
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": code, "message": message, "finishedAt": finished}}}
            ]
        }
    }


RESULT = {
    "uri": "/out/1.1.0",
    "sha256": "a" * 64,
    "data": {"window": {"start": "2026-10-27T00:00:00+00:00", "end": "2026-11-26T00:00:00+00:00"}},
    "metrics": {"accuracy": 0.91, "championAccuracy": 0.62, "macroF1": 0.9, "loss": 0.3, "samples": 80},
}


def test_the_newest_pod_message_is_the_result() -> None:
    pods = [pod('{"error": "Interrupted", "message": "SIGTERM"}', "2026-11-26T09:00:00Z", 143), pod(json.dumps(RESULT))]
    result = retraining.parse_result(retraining.termination_message(pods))
    assert (result.uri, result.metrics["accuracy"]) == ("/out/1.1.0", 0.91)


def test_failures_are_explained_from_the_trainer_or_the_job() -> None:
    assert (
        retraining.failure_reason(
            [pod('{"error": "DatasetError", "message": "only 3 usable examples"}')], "BackoffLimitExceeded"
        )
        == "DatasetError: only 3 usable examples"
    )
    assert retraining.failure_reason([], "DeadlineExceeded: too slow") == "DeadlineExceeded: too slow"
    with pytest.raises(ValueError, match="no termination message"):
        retraining.parse_result(None)


@pytest.mark.parametrize("digest", [None, "", "0" * 63, "G" * 64, 42])
def test_a_result_without_a_valid_sha256_registers_nothing(digest: object) -> None:
    with pytest.raises(ValueError, match="no valid manifest sha256"):
        retraining.parse_result(json.dumps({**RESULT, "sha256": digest}))


def test_offline_gate() -> None:
    passed, why = retraining.gate(retraining.parse_result(json.dumps(RESULT)), 0.01)
    assert passed
    assert "0.910 vs champion 0.620 on 80 held-out human corrections passes" in why
    worse = {**RESULT, "metrics": {**RESULT["metrics"], "accuracy": 0.60}}
    assert not retraining.gate(retraining.parse_result(json.dumps(worse)), 0.01)[0]


def test_registered_version_and_experiment_carry_lineage_and_the_template() -> None:
    spec = DriftPolicySpec.model_validate(EXAMPLE["spec"])
    record = RetrainingRecord(job="invoice-classifier-rt-1", reasons=["amount: PSI 0.4"], outcome="Running")
    body = retraining.model_version(
        name="invoice-classifier-1.1.0",
        spec=spec,
        version="1.1.0",
        base_model_uri="/models/base",
        result=retraining.parse_result(json.dumps(RESULT)),
        record=record,
        policy_name="invoice-classifier",
        parent="1.0.0",
    )
    source = body["spec"]["source"]
    assert (source["job"], source["parentVersion"], source["triggerReasons"]) == (
        "invoice-classifier-rt-1",
        "1.0.0",
        ["amount: PSI 0.4"],
    )
    assert body["spec"]["adapter"] == {"uri": "/out/1.1.0", "sha256": "a" * 64}
    template = ExperimentTemplate.model_validate(EXAMPLE["spec"]["experiment"])
    experiment = retraining.experiment(
        name="invoice-classifier-1.1.0",
        template=template,
        model="invoice-classifier",
        challenger="1.1.0",
        champion="1.0.0",
        policy_name="invoice-classifier",
    )
    assert experiment["spec"]["traffic"] == {"weight": 10, "steps": [5]}
    assert (experiment["spec"]["champion"], experiment["spec"]["challenger"]) == ("1.0.0", "1.1.0")
    assert "enabled" not in experiment["spec"]


PSEUDO = {"accuracy": 0.97, "championAccuracy": 1.0, "samples": 61}


def test_the_version_records_the_gate_on_corrections_and_pseudo_labels_apart_with_their_counts() -> None:
    spec = DriftPolicySpec.model_validate(EXAMPLE["spec"])
    result = retraining.parse_result(json.dumps({**RESULT, "pseudoLabelMetrics": PSEUDO}))
    body = retraining.model_version(
        name="invoice-classifier-1.1.0",
        spec=spec,
        version="1.1.0",
        base_model_uri="/models/base",
        result=result,
        record=RetrainingRecord(job="invoice-classifier-rt-1", outcome="Running"),
        policy_name="invoice-classifier",
        parent="1.0.0",
    )
    metrics = body["spec"]["metrics"]
    assert (metrics["accuracy"], metrics["championAccuracy"], metrics["samples"]) == (0.91, 0.62, 80)
    assert metrics["pseudoLabels"] == PSEUDO
    ModelVersionSpec.model_validate(body["spec"])  # the CRD's mirror accepts it
    passed, why = retraining.gate(result, 0.01)
    assert passed
    assert "on 80 held-out human corrections passes" in why
    assert "on 61 held-out pseudo-labels (not gated on) 0.970 vs 1.000" in why


def test_pseudo_labels_never_pass_a_version_the_corrections_fail() -> None:
    worse = {**RESULT, "metrics": {**RESULT["metrics"], "accuracy": 0.5}, "pseudoLabelMetrics": PSEUDO}
    assert not retraining.gate(retraining.parse_result(json.dumps(worse)), 0.01)[0]


def test_without_held_out_pseudo_labels_there_is_no_pseudo_label_figure() -> None:
    spec = DriftPolicySpec.model_validate(EXAMPLE["spec"])
    none_held_out = {"accuracy": None, "championAccuracy": None, "samples": 0}
    body = retraining.model_version(
        name="invoice-classifier-1.1.0",
        spec=spec,
        version="1.1.0",
        base_model_uri="/models/base",
        result=retraining.parse_result(json.dumps({**RESULT, "pseudoLabelMetrics": none_held_out})),
        record=RetrainingRecord(job="invoice-classifier-rt-1", outcome="Running"),
        policy_name="invoice-classifier",
        parent=None,
    )
    assert body["spec"]["metrics"]["pseudoLabels"] == {"samples": 0}


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=12), st.integers(), st.floats(), st.booleans(), st.none()))
def test_any_cpu_limit_gives_a_thread_count_of_at_least_one_or_none(limit: object) -> None:
    threads = cpu_threads(limit)
    assert threads is None or threads >= 1


@given(st.integers(min_value=1, max_value=10**6))
def test_a_cpu_limit_gives_its_ceiling_in_threads(millicores: int) -> None:
    assert cpu_threads(f"{millicores}m") == -(-millicores // 1000)
    assert cpu_threads(str(millicores)) == millicores == cpu_threads(millicores)


def test_a_job_with_a_cpu_limit_runs_torch_with_as_many_threads() -> None:
    spec = DriftPolicySpec.model_validate(
        {**EXAMPLE["spec"], "retraining": {**EXAMPLE["spec"]["retraining"], "resources": {"limits": {"cpu": "1500m"}}}}
    )
    body = example_job(spec, name="invoice-classifier-rt-1", base_model_uri="/models/base")
    env = {e["name"]: e["value"] for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OMP_NUM_THREADS"] == "2"
    unlimited = {e["name"] for e in example_job()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "OMP_NUM_THREADS" not in unlimited  # the example limits memory and GPUs, not CPU


REGISTRATION_TIME = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)


def registered(status: dict[str, object], passed: bool) -> dict[str, object]:
    """The status after the registration's change was written (a merge, as the status patch is)."""
    change = retraining.registration(passed, verdict="v", policy="p", version="1.1.0", now=REGISTRATION_TIME)
    return {**status, **change(dict(status))}


def test_the_gate_verdict_replaces_the_phase_the_spec_check_gave_first() -> None:
    """The new ModelVersion's spec check may write ``Registered`` before the retraining records the
    gate: a version the gate rejected must not stay Registered (an experiment would test it)."""
    first = {"phase": "Registered", "observedGeneration": 1}
    after = registered(first, passed=False)
    assert after["phase"] == "Rejected"
    assert [e["reason"] for e in after["history"]] == ["OfflineGate"]  # type: ignore[attr-defined]


PHASE_OR_NONE = st.sampled_from([None, "Registered", "Challenger", "Champion", "Archived", "RolledBack", "Rejected"])


@given(
    phase=PHASE_OR_NONE,
    gated_before=st.booleans(),
    earlier=st.integers(0, 60),
    passed=st.booleans(),
)
def test_registration_records_the_gate_once_and_never_moves_a_version_on(
    phase: str | None, gated_before: bool, earlier: int, passed: bool
) -> None:
    history = [{"action": "Promoted", "reason": "ChallengerBetter"}] * min(earlier, 50)  # as stored: 50 at most
    if gated_before:
        history = [*history, {"action": "Registered", "reason": "OfflineGate"}][-50:]
    status: dict[str, object] = {"history": history, **({"phase": phase} if phase else {})}
    once = registered(status, passed)
    assert registered(once, passed) == once  # redone after a lost status write: nothing changes
    assert registered(once, not passed) == once  # nor by a second verdict
    assert len(once.get("history") or []) <= 50  # type: ignore[arg-type]
    if gated_before or phase not in (None, "Registered"):
        assert once == status  # registered already, or moved on since
    else:
        assert once["phase"] == ("Registered" if passed else "Rejected")
        assert [e["reason"] for e in once["history"]].count("OfflineGate") == 1  # type: ignore[attr-defined]
