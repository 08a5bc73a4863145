"""An operator killed between any two writes of a switch: the experiment's
start, a promotion and a warm or cold rollback (the previous champion
released past its bake time first), and a rejection, each write the last one before a
kill in turn. After every write, and with a data plane that applies the
route only between turns (late, as a real proxy), no request could reach a
pod of the wrong version or one that is gone:

- every Service the applied route sends traffic to selects the pods of one
  version only, and that Deployment exists with ready endpoints;
- a Deployment is deleted only when the route the data plane has applied no
  longer sends to it;
- a hand-over cut short between its writes (the champion record, the two
  ModelVersion phases) is finished by the next whole turn: the model has one
  Champion phase after every turn;
- after every write, the champion as every reader takes it (the champion
  record, else the phases) is one version, and it changes hands once per
  hand-over: 1.0.0, then 1.1.0 once promoted, then 1.0.0 once rolled back,
  never back and forth.

The restarted operator reads only what the API holds (status included)."""

from __future__ import annotations

import copy
import datetime
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fake_kube import FakeKube
from relearn.adapters.kube import Resource
from relearn.api.abexperiment import TERMINAL_PHASES, ABExperimentSpec, ABExperimentStatus
from relearn.core import model_versions, workloads
from relearn.core.experiment import END_PHASES
from relearn.core.model_versions import StatusChange
from relearn.handlers.experiments import analysis, context, ending, notify, rollback
from relearn.handlers.outcome import Outcome
from test_switch_handlers import ranker

ROUTE = ("httproutes", "default", "ranker")
ABX = ("abexperiments", "default", "ranker-1.1.0")


class Killed(Exception):
    """The operator process died here."""


class DataPlane:
    """The route as the proxy has applied it (late: only when told to catch up)."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.spec = copy.deepcopy(kube.objects[ROUTE]["spec"])

    def catch_up(self) -> None:
        route = self.kube.objects[ROUTE]
        self.spec = copy.deepcopy(route["spec"])
        generation = route["metadata"]["generation"]
        accepted = {"type": "Accepted", "status": "True", "observedGeneration": generation}
        route["status"] = {"parents": [{"parentRef": {"name": "gw"}, "conditions": [accepted]}]}

    def routed(self) -> dict[str, int]:
        return {
            ref["name"]: int(ref.get("weight", 1))
            for rule in self.spec.get("rules") or ()
            for ref in rule.get("backendRefs") or ()
            if int(ref.get("weight", 1)) > 0
        }


class CrashingKube(FakeKube):
    """FakeKube whose ``crash_at``-th write is never done (the process died
    just before it), which bumps an edited route's generation, keeps
    Deployments ready and EndpointSlices up to date as a cluster would, and
    checks the invariants after every write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.crash_at: int | None = None
        self.plane: DataPlane | None = None
        self.violations: list[str] = []
        self.champions: list[str | None] = []  # the champion as readers take it, each time it changed

    def _write(self) -> None:
        self.writes += 1
        if self.crash_at is not None and self.writes == self.crash_at:
            self.crash_at = None
            raise Killed(f"killed before write {self.writes}")

    def _after(self, what: str) -> None:
        for deployment in self.of("deployments"):
            replicas = int(deployment["spec"].get("replicas", 1))
            generation = deployment["metadata"].get("generation", 1)
            deployment["status"] = {
                "observedGeneration": generation,
                **dict.fromkeys(("replicas", "readyReplicas", "availableReplicas", "updatedReplicas"), replicas),
            }
        for key in [k for k in self.objects if k[0] == "endpointslices"]:
            del self.objects[key]
        for service in self.of("services"):
            name = service["metadata"]["name"]
            pods = self.selected(name)
            self.objects[("endpointslices", "default", f"{name}-x")] = {
                "metadata": {"name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}} for _ in pods],
                "ports": [{"port": 8080}],
            }
        self.check(what)

    def selected(self, service: str) -> list[dict[str, Any]]:
        """The Deployments with running pods that ``service`` selects."""
        found = self.objects.get(("services", "default", service))
        selector = (found or {}).get("spec", {}).get("selector")
        return [
            d
            for d in self.of("deployments")
            if int(d["spec"].get("replicas", 1)) > 0 and workloads.selects(selector, workloads.pod_labels(d))
        ]

    def check(self, what: str) -> None:
        if self.plane is None:
            return
        record = self.objects.get(("leases", "default", model_versions.record_name("ranker")))
        found = model_versions.champion(self.of("modelversions"), model_versions.holder_of(record))
        champion = (found or {}).get("spec", {}).get("version")
        if champion is None:
            self.violations.append(f"after {what}: the model has no champion")
        if not self.champions or self.champions[-1] != champion:
            self.champions.append(champion)
        for service in self.plane.routed():
            versions = {workloads.pod_labels(d).get(workloads.VERSION_LABEL) for d in self.selected(service)}
            if len(versions) != 1:
                self.violations.append(f"after {what}: routed Service {service} selects versions {versions}")

    async def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> bool:
        self._write()
        done = await super().create(resource, namespace, body)
        self._after(f"create {resource.plural}/{body['metadata']['name']}")
        return done

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        self._write()
        if resource.plural == "deployments" and self.plane is not None:
            services = [s["metadata"]["name"] for s in self.of("services") if self.selected(s["metadata"]["name"])]
            for service in services:
                selected = [d["metadata"]["name"] for d in self.selected(service)]
                if selected == [name] and service in self.plane.routed():
                    self.violations.append(f"deployment {name} deleted while the applied route sends to {service}")
        done = await super().delete(resource, namespace, name)
        self._after(f"delete {resource.plural}/{name}")
        return done

    async def modify(
        self, resource: Resource, namespace: str, name: str, change: Callable[[dict[str, Any]], None], attempts: int = 5
    ) -> dict[str, Any]:
        found = self.objects.get((resource.plural, namespace, name))
        before = copy.deepcopy(found)
        if found is not None:
            trial = copy.deepcopy(found)
            change(trial)
            if trial == found:
                return copy.deepcopy(found)  # nothing to write
        self._write()
        result = await super().modify(resource, namespace, name, change, attempts)
        after = self.objects[(resource.plural, namespace, name)]
        if before is not None and before.get("spec") != after.get("spec"):
            after["metadata"]["generation"] = after["metadata"].get("generation", 1) + 1
        self._after(f"modify {resource.plural}/{name}")
        return result

    async def update_status(
        self, plural: str, namespace: str, name: str, change: StatusChange, attempts: int = 5
    ) -> dict[str, Any]:
        self._write()
        result = await super().update_status(plural, namespace, name, change, attempts)
        # As the API server's merge patch: a null removes the field.
        for key in [k for k, v in (self.objects[(plural, namespace, name)].get("status") or {}).items() if v is None]:
            del self.objects[(plural, namespace, name)]["status"][key]
        self._after(f"status of {plural}/{name}")
        return result


def world(kube: CrashingKube) -> None:
    ranker(kube)
    kube.add(
        "services",
        {"metadata": {"name": "ranker"}, "spec": {"selector": {"app": "ranker"}, "ports": [{"port": 80}]}},
    )
    kube.add(
        "httproutes",
        {"metadata": {"name": "ranker"}, "spec": {"rules": [{"backendRefs": [{"name": "ranker", "port": 80}]}]}},
    )
    kube.add(
        "abexperiments",
        {
            "apiVersion": "relearn.dev/v1alpha1",
            "kind": "ABExperiment",
            "metadata": {"name": "ranker-1.1.0", "uid": "uid-abx", "annotations": {}},
            "spec": {"model": "ranker", "challenger": "1.1.0", "workload": {"name": "ranker"}},
        },
    )
    kube.plane = DataPlane(kube)
    kube._after("set-up")
    kube.plane.catch_up()


async def turn(kube: CrashingKube, now: datetime.datetime) -> bool:
    """One daemon turn as ``daemon.run`` takes it; True once there is nothing left to do."""
    body = kube.objects[ABX]
    status = ABExperimentStatus.model_validate(body.get("status") or {})
    snapshot = {k: copy.deepcopy(body[k]) for k in ("apiVersion", "kind", "metadata")}
    spec = ABExperimentSpec.model_validate(body["spec"])
    ctx = context.Context(kube, snapshot, spec, status, now, logging.getLogger("test"), None)  # type: ignore[arg-type]
    outcome = Outcome()
    decision = status.decision.outcome if status.decision else None
    try:
        if status.phase == "Promoted":
            done = decision != "RollBack" and "relearn.dev/rollback" not in ctx.annotations
            await rollback.step(ctx, outcome)  # the health checks (no Prometheus here), the release
            await notify.write(ctx, outcome)
            return done
        elif status.phase in TERMINAL_PHASES:
            return True
        elif status.phase == "Promoting" or decision in END_PHASES:
            await ending.settle(ctx, outcome)
        else:
            await analysis.advance_experiment(ctx, outcome)
            if (outcome.status.get("phase") or status.phase) == "Progressing" and status.phase == "Progressing":
                return True  # started; the analysis is not what this test is about
        await notify.write(ctx, outcome)
    except context.Wait:
        pass
    return False


async def drive(
    kube: CrashingKube, clock: list[datetime.datetime], stage: str, until: Callable[[], bool] | None = None
) -> None:
    for _ in range(60):
        try:
            done = await turn(kube, clock[0])
        except Killed:
            done = False  # the operator restarts and reads the API again
        else:  # a whole turn, the first after a kill included, leaves the model one Champion
            champions = [v for v in kube.of("modelversions") if (v.get("status") or {}).get("phase") == "Champion"]
            if len(champions) > 1:
                kube.violations.append(f"after a whole turn of {stage}: {len(champions)} Champions")
        if kube.plane is not None:
            kube.plane.catch_up()
        kube.check("the data plane caught up")
        clock[0] += datetime.timedelta(seconds=1)
        if until() if until is not None else done:
            return
    raise AssertionError(f"{stage} never finished: {kube.objects[ABX].get('status')}")


async def switches(crash_at: int | None, path: str = "warm") -> CrashingKube:
    """Start, then promotion and a warm or cold rollback, or a rejection."""
    kube = CrashingKube()
    world(kube)
    if path == "cold":
        kube.objects[ABX]["spec"]["rollback"] = {"bakeTime": "3s"}
    kube.crash_at = crash_at
    clock = [datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)]
    await drive(kube, clock, "start")
    status = kube.objects[ABX]["status"]
    if path == "reject":
        status["decision"] = {"outcome": "Reject", "reason": "ChallengerWorse", "message": "worse"}
        await drive(kube, clock, "rejection")
        return kube
    status["decision"] = {"outcome": "Promote", "reason": "ChallengerBetter", "message": "better"}
    status["phase"] = "Promoting"
    await drive(kube, clock, "promotion")
    if path == "cold":
        released = lambda: (kube.objects[ABX]["status"].get("health") or {}).get("previousChampionWarm") is False  # noqa: E731
        await drive(kube, clock, "release", released)
        assert kube.objects[("deployments", "default", "ranker")]["spec"]["replicas"] == 0
    kube.objects[ABX]["metadata"]["annotations"]["relearn.dev/rollback"] = "previous"
    await drive(kube, clock, "rollback")
    return kube


async def test_a_clean_run_starts_promotes_and_rolls_back_with_every_invariant_kept() -> None:
    assert (await switches(None, "cold")).violations == []
    assert (await switches(None, "reject")).violations == []
    kube = await switches(None)
    assert kube.violations == []
    assert kube.objects[ABX]["status"]["phase"] == "RolledBack"
    assert ("deployments", "default", "ranker-1-1-0") not in kube.objects
    assert kube.plane is not None
    assert kube.plane.routed() == {"ranker": 100}
    assert kube.champions == ["1.0.0", "1.1.0", "1.0.0"]
    record = kube.objects[("leases", "default", "relearn-champion-ranker")]
    assert record["spec"]["holderIdentity"] == "1.0.0"  # handed to 1.1.0 at the promotion, back at the rollback
    assert record["spec"]["leaseTransitions"] == 1


@pytest.mark.parametrize("path", ["warm", "cold", "reject"])
@pytest.mark.parametrize("crash_at", range(1, 46))
async def test_a_kill_before_any_write_of_a_switch_lets_no_request_reach_the_wrong_pods(
    crash_at: int, path: str
) -> None:
    kube = await switches(crash_at, path)
    assert kube.violations == []
    assert kube.objects[ABX]["status"]["phase"] == ("Rejected" if path == "reject" else "RolledBack")
    assert kube.champions == (["1.0.0"] if path == "reject" else ["1.0.0", "1.1.0", "1.0.0"])
    assert ("deployments", "default", "ranker-1-1-0") not in kube.objects
