"""A thin async face of the Kubernetes API for the handlers: the few reads
and status writes they need, each run in a worker thread so no blocking call
touches kopf's event loop.

Built on the official ``kubernetes`` client, configured in-cluster (service
account) or from the kubeconfig, like kopf itself.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import socket
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client, config

from relearn.api import GROUP, VERSION
from relearn.api.base import rfc3339


class KubeClient:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)

    @classmethod
    def from_environment(cls) -> KubeClient:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient())

    async def list_model_versions(self, namespace: str, model: str) -> list[dict[str, Any]]:
        listing = await asyncio.to_thread(
            self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "modelversions"
        )
        return [item for item in listing["items"] if item.get("spec", {}).get("model") == model]

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        secret = await asyncio.to_thread(self.core.read_namespaced_secret, name, namespace)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        config_map = await asyncio.to_thread(self.core.read_namespaced_config_map, name, namespace)
        return dict(config_map.data or {})

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            job = await asyncio.to_thread(self.batch.read_namespaced_job, name, namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = self.api.sanitize_for_serialization(job)
        return result

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Job; False when one of that name exists already (never a second one)."""
        try:
            await asyncio.to_thread(self.batch.create_namespaced_job, namespace, body)
        except client.ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        pods = await asyncio.to_thread(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return [self.api.sanitize_for_serialization(p) for p in pods.items]

    async def create_custom(self, namespace: str, plural: str, body: dict[str, Any]) -> bool:
        """Create a Relearn object; False when one of that name exists already."""
        try:
            await asyncio.to_thread(
                self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body
            )
        except client.ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    async def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event about ``involved`` (an object as the API returns it), written before returning."""
        meta = involved.get("metadata") or {}
        now = rfc3339(datetime.datetime.now(datetime.UTC))
        body = {
            "metadata": {"generateName": f"{meta.get('name', 'relearn')}.", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": "relearn"},
            "reportingComponent": "relearn.dev/operator",
            "reportingInstance": socket.gethostname()[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        await asyncio.to_thread(self.core.create_namespaced_event, meta.get("namespace") or "default", body)

    async def update_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], dict[str, Any]],
        attempts: int = 5,
    ) -> dict[str, Any]:
        """Read the object, let ``change`` compute its new status from the
        current one, and write it with the read resourceVersion as a
        precondition; on a conflict, read again and retry."""
        for attempt in range(attempts):
            current = await asyncio.to_thread(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
            status = change(dict(current.get("status") or {}))
            body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "status": status}
            try:
                result: dict[str, Any] = await asyncio.to_thread(
                    self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
                )
                return result
            except client.ApiException as error:
                if error.status != 409 or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")
