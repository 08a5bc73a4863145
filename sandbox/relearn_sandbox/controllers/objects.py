"""What the controllers share: the pods an object owns, creating and deleting
them, their phase and readiness, and status writes, all through the
:class:`~relearn_sandbox.store.Store`. :class:`relearn_sandbox.kubelet.Kubelet`
uses the pod helpers too, when it releases a deleted pod.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from relearn_sandbox.errors import ApiError
from relearn_sandbox.store import Store


def template_hash(template: Mapping[str, Any]) -> str:
    """A short, stable hash of an object's content (``pod-template-hash``)."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def owned(store: Store, plural: str, group: str, namespace: str, owner_uid: str) -> list[dict[str, Any]]:
    return [
        o
        for o in store.objects(group, plural, namespace)
        if any(r.get("uid") == owner_uid for r in o["metadata"].get("ownerReferences") or ())
    ]


def patch_status(store: Store, group: str, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    rt = store.type_for(group, plural)
    store.patch(rt, namespace, name, "application/merge-patch+json", {"status": status}, subresource="status")


def create_pod(
    store: Store,
    namespace: str,
    owner: dict[str, Any],
    template: Mapping[str, Any],
    generate_name: str,
    extra_labels: Mapping[str, str],
) -> dict[str, Any]:
    meta = copy.deepcopy(template.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), **extra_labels}
    meta["generateName"] = generate_name
    meta["ownerReferences"] = [
        {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(template.get("spec") or {})}
    return store.create(store.type_for("", "pods"), namespace, pod)


def delete_pod(store: Store, namespace: str, name: str) -> None:
    with contextlib.suppress(ApiError):
        store.delete(store.type_for("", "pods"), namespace, name)


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in pod.get("status", {}).get("conditions") or ()
    )


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str(pod.get("status", {}).get("phase", "Pending"))
