"""The Endpoints and EndpointSlice controllers: a Service's pods as Endpoints
(ready ones in ``addresses``, others in ``notReadyAddresses``) and as
``discovery.k8s.io/v1`` EndpointSlices, at the loopback ports the pods'
annotation names (:mod:`relearn_sandbox.ports`). Run by
:class:`relearn_sandbox.kubelet.Kubelet`, also before it stops a deleted
pod's processes, so the pod leaves its Services first, as in a cluster.
"""

from __future__ import annotations

import contextlib
from typing import Any

from relearn_sandbox.controllers.objects import pod_phase, pod_ready, template_hash
from relearn_sandbox.errors import ApiError
from relearn_sandbox.ports import pod_port
from relearn_sandbox.selectors import parse_label_selector
from relearn_sandbox.store import Store

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class EndpointsController:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def sync(self, namespace: str, name: str) -> None:
        service = self.store.try_get("", "services", namespace, name)
        endpoints_rt = self.store.type_for("", "endpoints")
        if service is None:
            return
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return
        matches = parse_label_selector(",".join(f"{k}={v}" for k, v in selector.items()))
        subsets = []
        slice_endpoints: list[tuple[list[dict[str, Any]], dict[str, Any], bool]] = []
        for pod in self.store.objects("", "pods", namespace):
            if not matches(pod) or pod["metadata"].get("deletionTimestamp") or pod_phase(pod) != "Running":
                continue
            ports = [
                {"name": p.get("name", ""), "port": port, "protocol": p.get("protocol", "TCP")}
                for p in service["spec"].get("ports") or ()
                if (port := pod_port(pod, p.get("targetPort", p.get("port")))) is not None
            ]
            target_ref = {
                "kind": "Pod",
                "name": pod["metadata"]["name"],
                "namespace": namespace,
                "uid": pod["metadata"]["uid"],
            }
            address = {"ip": "127.0.0.1", "targetRef": target_ref}
            key = "addresses" if pod_ready(pod) else "notReadyAddresses"
            subsets.append({key: [address], "ports": ports})
            slice_endpoints.append((ports, target_ref, pod_ready(pod)))
        self._sync_endpoint_slices(service, slice_endpoints)
        body = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {"name": name, "namespace": namespace, "labels": service["metadata"].get("labels", {})},
            "subsets": subsets,
        }
        existing = self.store.try_get("", "endpoints", namespace, name)
        if existing is None:
            self.store.create(endpoints_rt, namespace, body)
        elif existing.get("subsets") != subsets:
            self.store.update(
                endpoints_rt,
                namespace,
                name,
                {
                    **body,
                    "metadata": {**existing["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]},
                },
            )

    def _sync_endpoint_slices(
        self, service: dict[str, Any], endpoints: list[tuple[list[dict[str, Any]], dict[str, Any], bool]]
    ) -> None:
        """``discovery.k8s.io/v1`` EndpointSlices beside the Endpoints (kubectl
        1.32+ ``describe svc`` reads these): one slice per distinct port list,
        since every pod here is 127.0.0.1 on its own ports."""
        meta = service["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        slices_rt = self.store.type_for("discovery.k8s.io", "endpointslices")
        grouped: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
        for ports, target, ready in endpoints:
            key = template_hash({"ports": ports})[:5]
            entry = {
                "addresses": ["127.0.0.1"],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": "sandbox",
                "targetRef": target,
            }
            grouped.setdefault(key, (ports, []))[1].append(entry)
        wanted = {f"{name}-{key}": value for key, value in grouped.items()}
        for existing in self.store.objects("discovery.k8s.io", "endpointslices", namespace):
            labels = existing["metadata"].get("labels") or {}
            if labels.get(SERVICE_NAME_LABEL) == name and existing["metadata"]["name"] not in wanted:
                with contextlib.suppress(ApiError):
                    self.store.delete(slices_rt, namespace, existing["metadata"]["name"])
        for slice_name, (ports, slice_endpoints) in wanted.items():
            body: dict[str, Any] = {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": slice_name,
                    "namespace": namespace,
                    "labels": {
                        **(meta.get("labels") or {}),
                        SERVICE_NAME_LABEL: name,
                        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                    },
                    "ownerReferences": [
                        {
                            "apiVersion": "v1",
                            "kind": "Service",
                            "name": name,
                            "uid": meta["uid"],
                            "controller": True,
                            "blockOwnerDeletion": True,
                        }
                    ],
                },
                "addressType": "IPv4",
                "endpoints": slice_endpoints,
                "ports": ports,
            }
            current = self.store.try_get("discovery.k8s.io", "endpointslices", namespace, slice_name)
            if current is None:
                self.store.create(slices_rt, namespace, body)
            elif (current.get("endpoints"), current.get("ports")) != (slice_endpoints, ports):
                body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
                self.store.update(slices_rt, namespace, slice_name, body)
