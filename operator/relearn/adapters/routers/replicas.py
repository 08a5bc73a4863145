"""Replicas router, for clusters with neither a mesh nor a gateway: one
Service selects the pods of both Deployments, and the challenger's share of
traffic is approximated by its share of ready replicas.

With T replicas (the champion's count when the experiment starts, recorded
on the challenger Deployment) the share moves in steps of 100/T percent:
the challenger gets ``T * weight / 100`` replicas (rounded half up), at least one while
its weight is above 0, and the champion keeps at least one until the
experiment ends (so with T = 1 any split is 50/50). Reported weights come
from ready replicas, which is what the Service actually balances over.

The previous champion cannot stay warm here without taking traffic: on
promotion it is scaled to 0, and a rollback scales it up again. Nor can it
mirror requests (``can_mirror`` is False: a shadow stage is refused at
admission); stickiness is by client address (the Service's
``sessionAffinity: ClientIP``), whatever cookie or header it names.
"""

from __future__ import annotations

from typing import Any

from relearn.adapters.kube import DEPLOYMENTS, SERVICES
from relearn.adapters.routers import Arm, Router, RouterError, Split, Weights, percentages
from relearn.core.durations import parse_duration

TOTAL_ANNOTATION = "relearn.dev/total-replicas"
VERSION_LABEL = "relearn.dev/version"
AFFINITY_ANNOTATION = "relearn.dev/session-affinity"  # the Service's affinity is the experiment's, undone at the end


def replica_split(total: int, weight: int) -> tuple[int, int]:
    """(champion, challenger) replicas for ``weight`` percent to the challenger."""
    if weight <= 0:
        return total, 0
    if weight >= 100:
        return 0, total
    if total <= 1:
        return 1, 1
    challenger = min(total - 1, max(1, int(total * weight / 100 + 0.5)))  # half up
    return total - challenger, challenger


def unpinned(service: dict[str, Any]) -> None:
    """The Service selects both arms: no version in its selector."""
    (service.get("spec") or {}).get("selector", {}).pop(VERSION_LABEL, None)


def sticky(service: dict[str, Any], seconds: int | None) -> None:
    """Stickiness by client address: the Service's ``sessionAffinity``
    (``ClientIP``, at most a day, the API's limit) keeps a client on one pod,
    so on one arm; None undoes what this router set, nothing else."""
    annotations = service["metadata"].setdefault("annotations", {})
    spec = service.setdefault("spec", {})
    if seconds is None:
        if annotations.pop(AFFINITY_ANNOTATION, None) is not None:
            spec.pop("sessionAffinity", None)
            spec.pop("sessionAffinityConfig", None)
        return
    if spec.get("sessionAffinity", "None") == "None":
        annotations[AFFINITY_ANNOTATION] = "true"
    spec["sessionAffinity"] = "ClientIP"
    spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": max(1, min(seconds, 86400))}}


class ReplicasRouter(Router):
    provider = "replicas"
    owns_services = False
    routes_by_ready_pods = True
    can_mirror = False  # one Service over both arms: there is nothing to copy a request to

    def initial_replicas(self, total: int, first_weight: int) -> int:
        return max(1, replica_split(total, first_weight)[1])

    async def _total(self, split: Split) -> int:
        challenger = await self.kube.get(DEPLOYMENTS, self.namespace, split.challenger.deployment)
        if challenger is None:
            raise RouterError("ChallengerMissing", f"Deployment {split.challenger.deployment} does not exist")
        recorded = (challenger["metadata"].get("annotations") or {}).get(TOTAL_ANNOTATION)
        if recorded is not None:
            return int(recorded)
        champion = await self.kube.get(DEPLOYMENTS, self.namespace, split.champion.deployment)
        total = int(((champion or {}).get("spec") or {}).get("replicas", 1))

        def record(deployment: dict[str, Any]) -> None:
            deployment["metadata"].setdefault("annotations", {})[TOTAL_ANNOTATION] = str(total)

        await self.kube.modify(DEPLOYMENTS, self.namespace, split.challenger.deployment, record)
        return total

    async def _scale(self, name: str, replicas: int) -> None:
        def scale(deployment: dict[str, Any]) -> None:
            deployment["spec"]["replicas"] = replicas

        await self.kube.modify(DEPLOYMENTS, self.namespace, name, scale)

    async def services(self) -> dict[str, int]:
        return {self.target: 100}

    async def reconcile(self, split: Split) -> None:
        if await self.kube.get(SERVICES, self.namespace, self.target) is None:
            raise RouterError("ServiceNotFound", f"Service {self.namespace}/{self.target} does not exist")
        await self.kube.modify(SERVICES, self.namespace, self.target, unpinned)
        if self.stickiness is not None:
            seconds = int(parse_duration(self.stickiness.max_age).total_seconds())
            await self.kube.modify(SERVICES, self.namespace, self.target, lambda s: sticky(s, seconds))
        await self._total(split)

    async def set_weights(self, split: Split, challenger: int) -> None:
        wanted = dict(
            zip(
                (split.champion.deployment, split.challenger.deployment),
                replica_split(await self._total(split), challenger),
                strict=True,
            )
        )
        current = {}
        for name in wanted:
            deployment = await self.kube.get(DEPLOYMENTS, self.namespace, name)
            current[name] = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
        # Grow before shrinking, so serving capacity never dips.
        for name in sorted(wanted, key=lambda n: wanted[n] <= current[n]):
            await self._scale(name, wanted[name])

    async def get_weights(self, split: Split) -> Weights:
        ready = []
        for name in (split.champion.deployment, split.challenger.deployment):
            deployment = await self.kube.get(DEPLOYMENTS, self.namespace, name)
            ready.append(int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0))
        return percentages(*ready)

    async def finalize(self, split: Split, keep: Arm) -> None:
        await self.set_weights(split, 100 if keep == "challenger" else 0)
        if self.stickiness is not None and await self.kube.get(SERVICES, self.namespace, self.target) is not None:
            await self.kube.modify(SERVICES, self.namespace, self.target, lambda s: sticky(s, None))
