"""Finding and creating an experiment's two arms: the champion's Deployment
and Service, the challenger's copy of them, and whether an arm may take
traffic yet.

Called by :mod:`.analysis` (Pending: the challenger is created), by
:mod:`.ending` and :mod:`.rollback` (the split to undo or return to) and by
the delete handler in :mod:`.daemon`. What differs between routers (one
Service for both arms or one each, the challenger's replicas) comes from the
router's capabilities (:class:`relearn.adapters.routers.Router`).
"""

from __future__ import annotations

from typing import Any

from relearn.adapters.kube import DEPLOYMENTS, SERVICES
from relearn.adapters.routers import Backend, Router, RouterError, Split
from relearn.core import model_versions, workloads
from relearn.handlers.experiments.context import Context, Wait
from relearn.handlers.outcome import post_event


async def deployment_of(ctx: Context, version: str, fallback: str | None) -> dict[str, Any] | None:
    """The Deployment running ``version`` of the model: labelled with the model
    and whose pods carry that version (a promoted challenger), else ``fallback``."""
    selector = f"{workloads.MODEL_LABEL}={ctx.spec.model}"
    for deployment in await ctx.kube.list_objects(DEPLOYMENTS, ctx.namespace, selector):
        labels = workloads.pod_labels(deployment)
        running = labels.get(workloads.VERSION_LABEL) == workloads.version_label(version)
        if running and not deployment["metadata"].get("deletionTimestamp"):
            return deployment
    return await ctx.kube.get(DEPLOYMENTS, ctx.namespace, fallback) if fallback else None


async def champion_deployment(ctx: Context, version: str) -> dict[str, Any]:
    """The champion's Deployment, else the one ``spec.workload.name`` declares."""
    found = await deployment_of(ctx, version, ctx.spec.workload.name)
    if found is None:
        raise Wait("WorkloadNotFound", f"Deployment {ctx.spec.workload.name} (spec.workload.name) does not exist")
    return found


async def service_for(ctx: Context, router: Router, deployment: dict[str, Any]) -> str:
    """The Service in front of a Deployment's pods: the most weighted one the
    router sends to, else any that selects them (a released champion's);
    the target itself for a router whose one Service selects both arms."""
    if not router.owns_services:
        return router.target
    labels = workloads.pod_labels(deployment)
    candidates = sorted(
        s["metadata"]["name"]
        for s in await ctx.kube.list_objects(SERVICES, ctx.namespace)
        if workloads.selects((s.get("spec") or {}).get("selector"), labels)
    )
    if not candidates:
        raise RouterError(
            "NoChampionBackend", f"no Service selects the pods of Deployment {deployment['metadata']['name']}"
        )
    routed = await router.services()
    return str(max(candidates, key=lambda name: routed.get(name, -1)))


async def resolve(ctx: Context) -> tuple[Split, dict[str, Any], dict[str, Any]]:
    """(split, champion Deployment, challenger ModelVersion)."""
    versions = await ctx.versions()
    champion_version = ctx.status.champion or ctx.spec.champion
    if champion_version is None:
        found = model_versions.champion(versions, await ctx.champion_holder())
        if found is None:
            raise Wait(
                "NoChampion", f"model {ctx.spec.model} has no champion ModelVersion (and spec.champion is empty)"
            )
        champion_version = str(found["spec"]["version"])
    challenger = model_versions.find(versions, ctx.spec.challenger)
    if challenger is None:
        raise Wait("ModelVersionNotFound", f"no ModelVersion of {ctx.spec.model} has version {ctx.spec.challenger}")
    refused = workloads.unverifiable(challenger)  # never an A/B test, so never a promotion, without a sha256
    if refused is not None:
        raise Wait("UnverifiedChallenger", refused)
    deployment = await champion_deployment(ctx, champion_version)
    name = workloads.workload_name(ctx.spec.workload.name, ctx.spec.challenger)
    router = ctx.router()
    split = Split(
        Backend(champion_version, deployment["metadata"]["name"], await service_for(ctx, router, deployment)),
        Backend(ctx.spec.challenger, name, router.arm_service(name)),
    )
    return split, deployment, dict(challenger)


async def ensure_challenger(
    ctx: Context, split: Split, champion: dict[str, Any], version: dict[str, Any], first_weight: int
) -> dict[str, Any] | None:
    """Create what the challenger needs (idempotent); its Deployment as it is now.

    The champion's Service is pinned to the champion's version before the
    challenger's Deployment exists, so at no moment (a restart between any
    two of these writes included) does it select a challenger pod."""
    namespace = ctx.namespace
    router = ctx.router()
    service = None
    if router.owns_services:
        service = await ctx.kube.get(SERVICES, namespace, split.champion.service)
        if service is None:
            raise Wait("ServiceNotFound", f"Service {split.champion.service} does not exist")
        await _pin(ctx, split, champion, service)
    existing = await ctx.kube.get(DEPLOYMENTS, namespace, split.challenger.deployment)
    if existing is None:
        replicas = router.initial_replicas(int(champion["spec"].get("replicas", 1)), first_weight)
        body = workloads.challenger_deployment(
            champion,
            name=split.challenger.deployment,
            model=ctx.spec.model,
            version=ctx.spec.challenger,
            version_env=ctx.spec.workload.version_env,
            adapter=version["spec"].get("adapter"),
            experiment=ctx.body,
            replicas=max(1, replicas),
        )
        # The Event first, named from the Deployment: a kill between the two leaves it posted once.
        await post_event(
            ctx.kube,
            ctx.body,
            "Normal",
            "ChallengerCreated",
            f"Deployment {split.challenger.deployment} runs {ctx.spec.model} {ctx.spec.challenger} "
            f"(a copy of {split.champion.deployment})",
            ctx.logger,
            split.challenger.deployment,
        )
        await ctx.kube.create(DEPLOYMENTS, namespace, body)
    if service is not None and await ctx.kube.get(SERVICES, namespace, split.challenger.service) is None:
        await ctx.kube.create(
            SERVICES,
            namespace,
            workloads.challenger_service(
                service, name=split.challenger.service, version=ctx.spec.challenger, experiment=ctx.body
            ),
        )
    await router.reconcile(split)
    return await ctx.kube.get(DEPLOYMENTS, namespace, split.challenger.deployment)


async def not_serving(ctx: Context, backend: Backend) -> str | None:
    """Why ``backend`` may not take traffic yet (None: it may): its Service
    has no ready endpoints. A Deployment that says available is not enough;
    the endpoints are what the data plane sends to. A router that routes by
    ready pods follows them already."""
    router = ctx.router()
    if router.routes_by_ready_pods:
        return None
    if await router.ready_endpoints(backend.service) > 0:
        return None
    return f"Service {backend.service} has no ready endpoints yet"


async def _pin(ctx: Context, split: Split, champion: dict[str, Any], service: dict[str, Any]) -> None:
    """The champion's Service must not select the challenger's pods: add the
    champion's version to its selector when it has none."""
    selector = (service.get("spec") or {}).get("selector") or {}
    if workloads.VERSION_LABEL in selector:
        return
    pinned = workloads.version_label(split.champion.version)
    if workloads.pod_labels(champion).get(workloads.VERSION_LABEL) != pinned:
        raise Wait(
            "WorkloadNotVersioned",
            f"the pods of Deployment {split.champion.deployment} must carry the label "
            f"{workloads.VERSION_LABEL}={pinned} so that Service {split.champion.service} "
            "can select the champion's pods only",
        )

    def pin(obj: dict[str, Any]) -> None:
        obj["spec"].setdefault("selector", {})[workloads.VERSION_LABEL] = pinned

    await ctx.kube.modify(SERVICES, ctx.namespace, split.champion.service, pin)
