"""The Deployment controller: a Deployment's pods, without ReplicaSets.

Its pods are labelled ``pod-template-hash`` (:func:`.objects.template_hash`
of the pod template) and owned by the Deployment; a template change replaces
pods as new ones become ready (``Recreate``: at once), and the status reports
replicas, updated, ready and available, as kubectl and the operator read
them. Run by :class:`relearn_sandbox.kubelet.Kubelet`.
"""

from __future__ import annotations

from relearn_sandbox.controllers.objects import (
    create_pod,
    delete_pod,
    owned,
    patch_status,
    pod_ready,
    template_hash,
)
from relearn_sandbox.store import Store, now_rfc3339


class DeploymentController:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def sync(self, namespace: str, name: str) -> None:
        deployment = self.store.try_get("apps", "deployments", namespace, name)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment.get("spec", {})
        desired = int(spec.get("replicas", 1))
        template = spec.get("template", {})
        current_hash = template_hash(template)
        pods = [
            p
            for p in owned(self.store, "pods", "", namespace, deployment["metadata"]["uid"])
            if not p["metadata"].get("deletionTimestamp")
        ]
        current = [p for p in pods if p["metadata"].get("labels", {}).get("pod-template-hash") == current_hash]
        old = [p for p in pods if p not in current]
        recreate = (spec.get("strategy") or {}).get("type") == "Recreate"
        for pod in sorted(current, key=pod_ready)[: max(0, len(current) - desired)]:
            delete_pod(self.store, namespace, pod["metadata"]["name"])
        current = current[:desired] if len(current) > desired else current
        if recreate and old:
            for pod in old:
                delete_pod(self.store, namespace, pod["metadata"]["name"])
            old = []
        for _ in range(desired - len(current)):
            current.append(
                create_pod(
                    self.store,
                    namespace,
                    deployment,
                    template,
                    f"{name}-{current_hash}-",
                    {"pod-template-hash": current_hash},
                )
            )
        ready_new = sum(1 for p in current if pod_ready(p))
        # Rolling replacement: old pods go as new ones become ready.
        keep_old = max(0, desired - ready_new)
        for pod in sorted(old, key=pod_ready)[: max(0, len(old) - keep_old)]:
            delete_pod(self.store, namespace, pod["metadata"]["name"])
        old = sorted(old, key=pod_ready)[max(0, len(old) - keep_old) :]
        ready = ready_new + sum(1 for p in old if pod_ready(p))
        available = ready >= desired
        status = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": len(current) + len(old),
            "updatedReplicas": len(current),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": max(0, desired - ready),
            "conditions": [
                {
                    "type": "Available",
                    "status": "True" if available else "False",
                    "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    "message": f"{ready} of {desired} replicas ready",
                    "lastUpdateTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                },
                {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable" if ready_new >= desired and not old else "ReplicaSetUpdated",
                    "message": f"{len(current)} updated replicas",
                    "lastUpdateTime": now_rfc3339(),
                    "lastTransitionTime": now_rfc3339(),
                },
            ],
        }
        previous = {k: v for k, v in (deployment.get("status") or {}).items() if k != "conditions"}
        if previous != {k: v for k, v in status.items() if k != "conditions"}:
            patch_status(self.store, "apps", "deployments", namespace, name, status)
