"""An in-memory stand-in for ``relearn.adapters.kube.KubeClient`` for the
handler tests: objects by (plural, namespace, name), status writes with the
merge the API server does, Events kept in a list, and failures on demand
(an API outage for some seconds, failing writes of one kind), so a test can
drive a daemon through what goes wrong on a real cluster."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client import ApiException
from relearn.adapters.kube import APIUnreachable, Resource, translate
from relearn.api import KINDS
from relearn.api.schema import openapi_schema
from relearn.core.consent import Use, check_secret
from relearn.core.model_versions import StatusChange


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.secrets: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = {}  # (data, annotations)
        self.secret_reads: list[str] = []
        self.outage_until = 0.0  # time.monotonic() before which every call fails
        self.failing_status_writes: dict[str, int] = {}  # plural -> writes still to fail
        self.status_writes: list[tuple[float, str, str, dict[str, Any]]] = []
        self.created: list[tuple[float, str, str]] = []  # (time, plural, name) of each create
        self.served: set[str] = set()  # plurals beyond the built-in kinds the cluster serves (pytorchjobs)
        self.bodies: dict[tuple[str, str, str], dict[str, Any]] = {}  # live raw bodies kopf would update
        self._versions = itertools.count(1)
        self._event_keys: set[tuple[Any, str, str]] = set()

    # -- arranging ------------------------------------------------------------

    def add(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        meta = body.setdefault("metadata", {})
        meta.setdefault("namespace", "default")
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = str(next(self._versions))
        self.objects[(plural, meta["namespace"], meta["name"])] = body
        return body

    def outage(self, seconds: float) -> None:
        self.outage_until = time.monotonic() + seconds

    def _check(self) -> None:
        if time.monotonic() < self.outage_until:
            raise APIUnreachable("the Kubernetes API is unreachable (ConnectionRefusedError: [Errno 111])")

    def of(self, plural: str, namespace: str = "default") -> list[dict[str, Any]]:
        return [o for (p, ns, _), o in self.objects.items() if p == plural and ns == namespace]

    # -- the KubeClient interface ---------------------------------------------------

    async def list_model_versions(self, namespace: str, model: str) -> list[dict[str, Any]]:
        self._check()
        return [copy.deepcopy(v) for v in self.of("modelversions", namespace) if v["spec"].get("model") == model]

    async def read_secret(self, namespace: str, name: str, use: Use) -> dict[str, str]:
        """As the adapter: the data only when the Secret consents to ``use``."""
        self._check()
        if (namespace, name) not in self.secrets:
            raise translate(ApiException(status=404, reason="Not Found"))
        data, annotations = self.secrets[(namespace, name)]
        check_secret(name, annotations, use)
        self.secret_reads.append(name)
        return dict(data)

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        self._check()
        raise translate(ApiException(status=404, reason="Not Found"))

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        job = self.objects.get(("jobs", namespace, name))
        return copy.deepcopy(job) if job else None

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        return await self.create(Resource("batch", "v1", "jobs"), namespace, body)

    async def serves(self, resource: Resource) -> bool:
        self._check()
        return resource.plural in self.served

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        return await self.list_objects(Resource("", "v1", "pods"), namespace, label_selector)

    async def create_custom(self, namespace: str, plural: str, body: dict[str, Any]) -> bool:
        return await self.create(Resource("relearn.dev", "v1alpha1", plural), namespace, body)

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        found = self.objects.get((resource.plural, namespace, name))
        return copy.deepcopy(found) if found else None

    async def list_objects(self, resource: Resource, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        self._check()
        wanted = dict(part.split("=", 1) for part in label_selector.split(",") if part)
        return [
            copy.deepcopy(o)
            for o in self.of(resource.plural, namespace)
            if all((o["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    async def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> bool:
        self._check()
        name = body["metadata"]["name"]
        if (resource.plural, namespace, name) in self.objects:
            return False
        self.add(resource.plural, {**copy.deepcopy(body), "metadata": {**body["metadata"], "namespace": namespace}})
        self.created.append((time.monotonic(), resource.plural, name))
        return True

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        self._check()
        return self.objects.pop((resource.plural, namespace, name), None) is not None

    async def modify(
        self, resource: Resource, namespace: str, name: str, change: Callable[[dict[str, Any]], None], attempts: int = 5
    ) -> dict[str, Any]:
        self._check()
        found = self.objects.get((resource.plural, namespace, name))
        if found is None:
            raise translate(ApiException(status=404, reason="Not Found"))
        change(found)
        return copy.deepcopy(found)

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, key: str | None = None
    ) -> bool:
        """As the adapter: an Event with a key is posted once per (object, reason, key)."""
        self._check()
        meta = involved.get("metadata") or {}
        if key is not None:
            if (meta.get("uid"), reason, key) in self._event_keys:
                return False
            self._event_keys.add((meta.get("uid"), reason, key))
        self.events.append({"object": meta.get("name"), "type": type_, "reason": reason, "message": message})
        return True

    async def update_status(
        self, plural: str, namespace: str, name: str, change: StatusChange, attempts: int = 5
    ) -> dict[str, Any]:
        self._check()
        await asyncio.sleep(0)
        found = self.objects.get((plural, namespace, name))
        if found is None:
            raise translate(ApiException(status=404, reason="Not Found"))
        status = change(copy.deepcopy(found.get("status") or {}))
        if not status:
            return copy.deepcopy(found)
        if self.failing_status_writes.get(plural, 0) > 0:
            self.failing_status_writes[plural] -= 1
            raise translate(ApiException(status=500, reason="Internal Server Error (injected)"))
        pruned = unknown_fields(plural, status)
        assert not pruned, f"{plural}/{name}: the API server would prune status fields {pruned}"
        found["status"] = {**(found.get("status") or {}), **copy.deepcopy(status)}
        self.status_writes.append((time.monotonic(), plural, name, copy.deepcopy(status)))
        live = self.bodies.get((plural, namespace, name))
        if live is not None:  # what kopf's watch would do to the daemon's body
            live["status"] = copy.deepcopy(found["status"])
        return copy.deepcopy(found)


def _unknown(schema: Mapping[str, Any], value: Any, path: str) -> list[str]:
    """Paths in ``value`` the structural schema does not know (what the API server prunes)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict) and schema.get("type") == "object":
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        found: list[str] = []
        for key, item in value.items():
            if properties is not None and key in properties:
                found += _unknown(properties[key], item, f"{path}.{key}")
            elif isinstance(extra, dict):
                found += _unknown(extra, item, f"{path}.{key}")
            elif properties is not None and item is not None:  # None: a merge-patch removal
                found.append(f"{path}.{key}")
        return found
    if isinstance(value, list) and schema.get("type") == "array":
        return [p for i, item in enumerate(value) for p in _unknown(schema.get("items") or {}, item, f"{path}[{i}]")]
    return []


def unknown_fields(plural: str, status: Mapping[str, Any]) -> list[str]:
    """Status fields a handler wrote that the CRD has no place for: a misspelt key."""
    kind = next((k for k in KINDS if k.plural == plural), None)
    if kind is None:
        return []
    return _unknown(openapi_schema(kind)["properties"]["status"], dict(status), "status")


class Stopped:
    """A stand-in for kopf's DaemonStopped: falsy until set; wait() sleeps or returns when set."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c["type"] == type_), None)
