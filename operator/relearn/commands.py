"""``relearn promote``, ``relearn abort`` and ``relearn rollback``: a
person's decisions, written as annotations on an ABExperiment so a GitOps
user can make the same ones by committing them (``relearn.dev/approve``,
``relearn.dev/abort``, ``relearn.dev/rollback``). The operator acts on them
and records who asked in status, history and Events.

Each command is idempotent (twice = once: asking again for what is done or
under way says so and succeeds) and refuses with a clear message when the
experiment ended otherwise.
"""

from __future__ import annotations

import getpass
import socket
from typing import Any

from kubernetes import client

from relearn.adapters.kube import Target, connect
from relearn.api import GROUP, VERSION
from relearn.api.abexperiment import TERMINAL_PHASES
from relearn.api.names import ABORT_ANNOTATION, APPROVE_ANNOTATION, REQUESTED_BY_ANNOTATION, ROLLBACK_ANNOTATION
from relearn.core.model_versions import FAILED_PHASES
from relearn.core.model_versions import champion as current_champion

__all__ = ["Refused", "Target", "abort", "connect", "promote", "rollback", "who"]


class Refused(Exception):
    """The command cannot do what was asked; the message says why."""


def who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (relearn CLI)"


def _experiment(target: Target, name: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = target.custom.get_namespaced_custom_object(
            GROUP, VERSION, target.namespace, "abexperiments", name
        )
    except client.ApiException as error:
        if error.status == 404:
            raise Refused(f"no ABExperiment {name} in namespace {target.namespace}") from None
        raise
    return found


def _annotate(target: Target, name: str, key: str, value: str) -> None:
    """The decision's annotation, and who asked (the operator names them in status and history)."""
    annotations = {key: value, REQUESTED_BY_ANNOTATION: who()}
    target.custom.patch_namespaced_custom_object(
        GROUP, VERSION, target.namespace, "abexperiments", name, {"metadata": {"annotations": annotations}}
    )


def promote(target: Target, name: str) -> str:
    experiment = _experiment(target, name)
    status = experiment.get("status") or {}
    phase = status.get("phase") or "Pending"
    challenger = experiment["spec"]["challenger"]
    if phase in ("Promoting", "Promoted"):
        return f"{name}: {challenger} is promoted already ({phase})"
    if phase in TERMINAL_PHASES:
        raise Refused(f"ABExperiment {name} is {phase}: nothing to approve")
    if experiment["spec"].get("promotion", "Automatic") != "Manual":
        raise Refused(f"ABExperiment {name} promotes automatically (spec.promotion: Automatic): nothing to approve")
    annotations = experiment["metadata"].get("annotations") or {}
    if annotations.get(APPROVE_ANNOTATION) != challenger:
        _annotate(target, name, APPROVE_ANNOTATION, challenger)
    decision = status.get("decision") or {}
    if decision.get("reason") == "AwaitingApproval":
        return f"approved: {name} promotes {challenger} at its next analysis ({decision.get('message', '')})"
    return (
        f"approved {challenger}: {name} promotes it once the evidence says it is better "
        f"(now: {decision.get('reason', 'no decision yet')})"
    )


def abort(target: Target, name: str) -> str:
    experiment = _experiment(target, name)
    status = experiment.get("status") or {}
    phase = status.get("phase") or "Pending"
    if phase == "Aborted" or (status.get("decision") or {}).get("outcome") == "Abort":
        return f"{name} is aborted already"
    if phase in TERMINAL_PHASES or phase == "Promoting":
        raise Refused(f"ABExperiment {name} is {phase}: nothing to abort")
    if ABORT_ANNOTATION not in (experiment["metadata"].get("annotations") or {}):
        _annotate(target, name, ABORT_ANNOTATION, who())
    return f"aborting {name}: all traffic goes back to the champion and the challenger's workload is removed"


def rollback(target: Target, model: str, to: str | None = None) -> str:
    """Ask the experiment that promoted the model's champion to roll it back."""
    versions = [
        v
        for v in target.custom.list_namespaced_custom_object(GROUP, VERSION, target.namespace, "modelversions")["items"]
        if v["spec"].get("model") == model
    ]
    champion = current_champion(versions, target.champion_records().get(model))
    if champion is None:
        raise Refused(f"model {model} has no champion in namespace {target.namespace}")
    version = champion["spec"]["version"]
    experiments = [
        e
        for e in target.custom.list_namespaced_custom_object(GROUP, VERSION, target.namespace, "abexperiments")["items"]
        if e["spec"].get("model") == model
    ]
    for experiment in experiments:  # twice = once: a rollback to this champion is done or under way
        status = experiment.get("status") or {}
        under_way = (status.get("decision") or {}).get("outcome") == "RollBack"
        if (under_way or status.get("phase") == "RolledBack") and status.get("rollbackTarget") == (to or version):
            name = experiment["metadata"]["name"]
            state = "done" if status.get("phase") == "RolledBack" else "under way"
            return f"rollback of {experiment['spec']['challenger']} to {status['rollbackTarget']} {state} ({name})"
    promoter = next(
        (
            e
            for e in experiments
            if (e.get("status") or {}).get("phase") == "Promoted" and e["spec"].get("challenger") == version
        ),
        None,
    )
    if promoter is None:
        raise Refused(
            f"nothing to roll back to: champion {model} {version} was not promoted by an ABExperiment "
            "(a declared champion has no previous version)"
        )
    if to is not None:
        wanted = next((v for v in versions if v["spec"].get("version") == to), None)
        if wanted is None:
            raise Refused(f"no ModelVersion of {model} has version {to}")
        if to == version:
            raise Refused(f"{to} is the champion already")
        phase = (wanted.get("status") or {}).get("phase")
        if phase in FAILED_PHASES:
            raise Refused(f"{to} failed its own checks ({phase}); a rollback never returns to it")
    name = promoter["metadata"]["name"]
    if ROLLBACK_ANNOTATION not in (promoter["metadata"].get("annotations") or {}):
        _annotate(target, name, ROLLBACK_ANNOTATION, to or "previous")
    goal = to or (promoter.get("status") or {}).get("champion") or "the previous champion"
    return f"rolling back {model} {version} to {goal} ({ROLLBACK_ANNOTATION} on abexperiment/{name}; by {who()})"
