"""relearn promote / abort / rollback: what they annotate, when they refuse,
and that asking twice is asking once (against an in-memory API)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from relearn import commands
from relearn.commands import Refused, Target


class FakeCustom:
    def __init__(self, **plurals: list[dict[str, Any]]) -> None:
        self.plurals = plurals
        self.patches: list[tuple[str, dict[str, Any]]] = []

    def list_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, label_selector: str = ""
    ) -> dict[str, Any]:
        return {"items": copy.deepcopy(self.plurals.get(plural, []))}

    def get_namespaced_custom_object(self, group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        for item in self.plurals.get(plural, []):
            if item["metadata"]["name"] == name:
                return copy.deepcopy(item)
        raise client.ApiException(status=404)

    def patch_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, body: dict[str, Any]
    ) -> None:
        self.patches.append((name, body))
        for item in self.plurals[plural]:
            if item["metadata"]["name"] == name:
                item["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])


def mv(version: str, phase: str | None = None, declared: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": f"docs-{version}"},
        "spec": {"model": "docs", "version": version, "declaredChampion": declared},
        "status": {"phase": phase} if phase else {},
    }


def abx(challenger: str, status: dict[str, Any], promotion: str = "Automatic") -> dict[str, Any]:
    return {
        "metadata": {"name": f"docs-{challenger}"},
        "spec": {"model": "docs", "challenger": challenger, "promotion": promotion},
        "status": status,
    }


def target(fake: FakeCustom) -> Target:
    return Target(fake, "ml")  # type: ignore[arg-type]


def test_rollback_annotates_the_experiment_that_promoted_the_champion_once() -> None:
    fake = FakeCustom(
        modelversions=[mv("1.0.0", "Archived", declared=True), mv("1.1.0", "Champion"), mv("0.9.0", "RolledBack")],
        abexperiments=[abx("1.1.0", {"phase": "Promoted", "champion": "1.0.0"})],
    )
    said = commands.rollback(target(fake), "docs")
    assert said.startswith("rolling back docs 1.1.0 to 1.0.0 (relearn.dev/rollback on abexperiment/docs-1.1.0")
    ((name, body),) = fake.patches
    assert name == "docs-1.1.0"
    assert body["metadata"]["annotations"]["relearn.dev/rollback"] == "previous"
    assert "relearn CLI" in body["metadata"]["annotations"]["relearn.dev/requested-by"]
    commands.rollback(target(fake), "docs")
    assert len(fake.patches) == 1  # twice = once
    with pytest.raises(Refused, match=r"0.9.0 failed its own checks \(RolledBack\)"):
        commands.rollback(target(fake), "docs", to="0.9.0")
    with pytest.raises(Refused, match=r"no ModelVersion of docs has version 7\.0\.0"):
        commands.rollback(target(fake), "docs", to="7.0.0")


def test_rollback_refuses_when_there_is_nothing_to_roll_back_to_and_says_when_it_is_done() -> None:
    declared = FakeCustom(modelversions=[mv("1.0.0", declared=True)], abexperiments=[])
    with pytest.raises(Refused, match=r"nothing to roll back to: champion docs 1\.0\.0 was not promoted"):
        commands.rollback(target(declared), "docs")
    with pytest.raises(Refused, match="model docs has no champion"):
        commands.rollback(target(FakeCustom(modelversions=[], abexperiments=[])), "docs")
    done = FakeCustom(
        modelversions=[mv("1.0.0", "Champion", declared=True), mv("1.1.0", "RolledBack")],
        abexperiments=[abx("1.1.0", {"phase": "RolledBack", "rollbackTarget": "1.0.0"})],
    )
    assert commands.rollback(target(done), "docs") == "rollback of 1.1.0 to 1.0.0 done (docs-1.1.0)"
    assert done.patches == []


def test_promote_and_abort_annotate_and_refuse_with_reasons() -> None:
    fake = FakeCustom(
        abexperiments=[
            abx(
                "1.1.0",
                {"phase": "Progressing", "decision": {"reason": "AwaitingApproval", "message": "lift +0.05"}},
                "Manual",
            ),
            abx("1.2.0", {"phase": "Progressing"}),
            abx("1.3.0", {"phase": "Rejected"}),
        ]
    )
    assert commands.promote(target(fake), "docs-1.1.0").startswith("approved: docs-1.1.0 promotes 1.1.0")
    assert fake.patches[-1][0] == "docs-1.1.0"
    assert fake.patches[-1][1]["metadata"]["annotations"]["relearn.dev/approve"] == "1.1.0"
    commands.promote(target(fake), "docs-1.1.0")
    assert len(fake.patches) == 1
    with pytest.raises(Refused, match="promotes automatically"):
        commands.promote(target(fake), "docs-1.2.0")
    with pytest.raises(Refused, match="is Rejected: nothing to approve"):
        commands.promote(target(fake), "docs-1.3.0")
    with pytest.raises(Refused, match="no ABExperiment docs-9 in namespace ml"):
        commands.promote(target(fake), "docs-9")
    assert commands.abort(target(fake), "docs-1.2.0").startswith("aborting docs-1.2.0")
    name, body = fake.patches[-1]
    assert name == "docs-1.2.0"
    assert "relearn CLI" in body["metadata"]["annotations"]["relearn.dev/abort"]
    assert (
        body["metadata"]["annotations"]["relearn.dev/requested-by"]
        == body["metadata"]["annotations"]["relearn.dev/abort"]
    )
    commands.abort(target(fake), "docs-1.2.0")
    assert len(fake.patches) == 2
    with pytest.raises(Refused, match="is Rejected: nothing to abort"):
        commands.abort(target(fake), "docs-1.3.0")
