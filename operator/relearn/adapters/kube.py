"""A thin async face of the Kubernetes API for the handlers: the few reads
and status writes they need, each run in a worker thread so no blocking call
touches kopf's event loop.

Built on the official ``kubernetes`` client, configured in-cluster (service
account) or from the kubeconfig, like kopf itself. Every call has a request
timeout. This is the one module that sees the client's exceptions: each is
translated once, in :meth:`KubeClient._run`, into the vocabulary of
:mod:`relearn.errors` (:class:`~relearn.errors.NotFound`,
:class:`~relearn.errors.Conflict`, :class:`~relearn.errors.Forbidden`,
:class:`~relearn.errors.Invalid`, else :class:`~relearn.errors.APIError`),
and a transport failure (connection refused or reset, a timeout, the API
server answering 502/503/504 while it restarts) is raised as
:class:`~relearn.errors.APIUnreachable`, so handlers never test a status code
or urllib3's exceptions.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import hashlib
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config

from relearn.api import GROUP, VERSION
from relearn.api.base import rfc3339
from relearn.core import model_versions
from relearn.core.consent import Use, check_secret
from relearn.core.model_versions import StatusChange
from relearn.errors import APIError, APIUnreachable, Conflict, Forbidden, Invalid, KubernetesError, NotFound

__all__ = ["APIUnreachable", "KubeClient", "Resource", "translate"]


@dataclass(frozen=True)
class Resource:
    """A namespaced kind the operator reads and writes as plain dicts."""

    group: str
    version: str
    plural: str


DEPLOYMENTS = Resource("apps", "v1", "deployments")
SERVICES = Resource("", "v1", "services")
HTTPROUTES = Resource("gateway.networking.k8s.io", "v1", "httproutes")
VIRTUALSERVICES = Resource("networking.istio.io", "v1", "virtualservices")
ENDPOINTSLICES = Resource("discovery.k8s.io", "v1", "endpointslices")
ENDPOINTS = Resource("", "v1", "endpoints")  # where a cluster has no EndpointSlices
ABEXPERIMENTS = Resource(GROUP, VERSION, "abexperiments")
LEASES = Resource("coordination.k8s.io", "v1", "leases")  # the models' champion records
PYTORCHJOBS = Resource("kubeflow.org", "v1", "pytorchjobs")  # Kubeflow's training operator, when installed
REQUEST_TIMEOUT = 30.0  # seconds per API call: a hung API server must not hold a daemon
UNAVAILABLE_STATUSES = (502, 503, 504)


_BY_STATUS: dict[int, type[APIError]] = {
    400: Invalid,
    401: Forbidden,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: Invalid,
}


def _unreachable(error: BaseException) -> APIUnreachable:
    # urllib3's messages name the URL and the cause, never credentials.
    text = str(error)
    status = None
    if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason is not None:
        text = f"{type(error.reason).__name__}: {error.reason}"
    elif isinstance(error, client.ApiException):
        text = f"{error.status} {error.reason}"
        status = error.status
    return APIUnreachable(f"the Kubernetes API is unreachable ({text[:300]})", status=status)


def translate(error: client.ApiException) -> KubernetesError:
    """The client's exception in Relearn's words (status and reason only: the
    body of an API error may quote the request)."""
    status = int(error.status) if error.status is not None else None
    if status in UNAVAILABLE_STATUSES:
        return _unreachable(error)
    kind = _BY_STATUS.get(status or 0, APIError)
    reason = str(error.reason or "")
    return kind(f"the Kubernetes API answered {status} {reason}", status=status, http_reason=reason)


class KubeClient:
    def __init__(self, api: client.ApiClient, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.api = api
        self.request_timeout = request_timeout
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.batch = client.BatchV1Api(api)
        self.apps = client.AppsV1Api(api)

    @classmethod
    def from_environment(cls) -> KubeClient:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        return cls(client.ApiClient())

    async def _run(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One API call in a worker thread, with the request timeout; transport
        failures become :class:`APIUnreachable`."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        except client.ApiException as error:
            raise translate(error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise _unreachable(error) from None

    async def list_model_versions(self, namespace: str, model: str) -> list[dict[str, Any]]:
        listing = await self._run(self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, "modelversions")
        return [item for item in listing["items"] if item.get("spec", {}).get("model") == model]

    async def read_secret(self, namespace: str, name: str, use: Use) -> dict[str, str]:
        """A Secret's data, only when the Secret allows ``use``
        (:func:`relearn.core.consent.check_secret`; else :class:`UseRefused`)."""
        secret = await self._run(self.core.read_namespaced_secret, name, namespace)
        check_secret(name, (secret.metadata.annotations if secret.metadata else None), use)
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str]:
        config_map = await self._run(self.core.read_namespaced_config_map, name, namespace)
        return dict(config_map.data or {})

    async def read_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            job = await self._run(self.batch.read_namespaced_job, name, namespace)
        except NotFound:
            return None
        result: dict[str, Any] = self.api.sanitize_for_serialization(job)
        return result

    async def create_job(self, namespace: str, body: dict[str, Any]) -> bool:
        """Create a Job; False when one of that name exists already (never a second one)."""
        try:
            await self._run(self.batch.create_namespaced_job, namespace, body)
        except Conflict:
            return False
        return True

    async def serves(self, resource: Resource) -> bool:
        """Whether the cluster serves ``resource`` (API discovery, which every
        authenticated client may read: no RBAC rule, no CRD read)."""
        try:
            listing = await self._run(self.custom.get_api_resources, resource.group, resource.version)
        except NotFound:
            return False
        return any(r.name == resource.plural for r in (listing.resources or ()) if listing is not None)

    async def list_pods(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        pods = await self._run(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return [self.api.sanitize_for_serialization(p) for p in pods.items]

    async def create_custom(self, namespace: str, plural: str, body: dict[str, Any]) -> bool:
        """Create a Relearn object; False when one of that name exists already."""
        try:
            await self._run(self.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, plural, body)
        except Conflict:
            return False
        return True

    # -- any namespaced resource as a dict -------------------------------------

    def _call(self, resource: Resource, verb: str, namespace: str, *args: Any, **kwargs: Any) -> Any:
        """The typed API call for a built-in kind, the custom-objects call for the rest."""
        typed = {
            DEPLOYMENTS: (self.apps, "deployment"),
            SERVICES: (self.core, "service"),
            ENDPOINTS: (self.core, "endpoints"),
        }.get(resource)
        if typed is not None:
            api, kind = typed
            method = getattr(api, f"{verb}_namespaced_{kind}")
            if verb in ("create", "list"):
                return method(namespace, *args, **kwargs)
            return method(args[0], namespace, *args[1:], **kwargs)
        method = getattr(self.custom, f"{'get' if verb == 'read' else verb}_namespaced_custom_object")
        return method(resource.group, resource.version, namespace, resource.plural, *args, **kwargs)

    def _plain(self, result: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self.api.sanitize_for_serialization(result)
        return plain

    async def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self._plain(await self._run(self._call, resource, "read", namespace, name))
        except NotFound:
            return None

    async def list_objects(self, resource: Resource, namespace: str, label_selector: str = "") -> list[dict[str, Any]]:
        listing = self._plain(await self._run(self._call, resource, "list", namespace, label_selector=label_selector))
        return list(listing.get("items") or ())

    async def create(self, resource: Resource, namespace: str, body: dict[str, Any]) -> bool:
        """Create; False when an object of that name exists already."""
        try:
            await self._run(self._call, resource, "create", namespace, body)
        except Conflict:
            return False
        return True

    async def delete(self, resource: Resource, namespace: str, name: str) -> bool:
        """Delete (background propagation); False when it was gone already."""
        try:
            await self._run(self._call, resource, "delete", namespace, name, body={"propagationPolicy": "Background"})
        except NotFound:
            return False
        return True

    async def modify(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], None],
        attempts: int = 5,
    ) -> dict[str, Any]:
        """Read, let ``change`` edit a copy in place, and replace the object
        with the read resourceVersion as a precondition (nothing is written
        when nothing changed); on a conflict, read again and retry. Raises
        :class:`~relearn.errors.NotFound` when the object does not exist."""
        for attempt in range(attempts):
            current = self._plain(await self._run(self._call, resource, "read", namespace, name))
            edited = copy.deepcopy(current)
            change(edited)
            if edited == current:
                return current
            try:
                return self._plain(await self._run(self._call, resource, "replace", namespace, name, edited))
            except Conflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, key: str | None = None
    ) -> bool:
        """A core/v1 Event about ``involved`` (an object as the API returns it),
        written before returning. With a ``key`` the Event's name derives from
        the object, the reason and the key, so posting it again (a turn redone
        after a kill or a lost status write) is a 409 and no second Event;
        False then."""
        meta = involved.get("metadata") or {}
        now = rfc3339(datetime.datetime.now(datetime.UTC))
        if key is None:
            naming: dict[str, Any] = {"generateName": f"{meta.get('name', 'relearn')}."}
        else:
            digest = hashlib.sha256(f"{meta.get('uid')}/{reason}/{key}".encode()).hexdigest()[:16]
            naming = {"name": f"{str(meta.get('name', 'relearn'))[:200]}.{digest}"}
        body = {
            "metadata": {**naming, "namespace": meta.get("namespace")},
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
        try:
            await self._run(self.core.create_namespaced_event, meta.get("namespace") or "default", body)
        except Conflict:
            if key is None:
                raise
            return False
        return True

    async def update_status(
        self, plural: str, namespace: str, name: str, change: StatusChange, attempts: int = 5
    ) -> dict[str, Any]:
        """Read the object, let ``change`` compute its new status from the
        current one, and write it with the read resourceVersion as a
        precondition; on a conflict, read again and retry."""
        for attempt in range(attempts):
            current: dict[str, Any] = await self._run(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name
            )
            status = change(dict(current.get("status") or {}))
            if not status:
                return current  # nothing to change
            body = {"metadata": {"resourceVersion": current["metadata"]["resourceVersion"]}, "status": status}
            try:
                result: dict[str, Any] = await self._run(
                    self.custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, plural, name, body
                )
                return result
            except Conflict:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Target:
    """A namespace of a cluster, as the CLI's commands reach it."""

    custom: client.CustomObjectsApi
    namespace: str

    def champion_records(self) -> dict[str, str]:
        """The champion each model's record names (model -> version), from
        the namespace's champion records; empty where the person may not read
        Leases (the champion is then taken from the ModelVersions' phases)."""
        try:
            listed = self.custom.list_namespaced_custom_object(
                LEASES.group,
                LEASES.version,
                self.namespace,
                LEASES.plural,
                label_selector=model_versions.RECORD_SELECTOR,
            )
        except client.ApiException as error:
            if error.status in (401, 403, 404):
                return {}
            raise translate(error) from None
        return model_versions.holders(listed.get("items") or ())


def connect(namespace: str | None, kubeconfig: str | None = None) -> Target:
    """The API of a person's command (``relearn promote``, ``report``, ``status``): the
    kubeconfig given, else in-cluster, else ~/.kube/config; the context's namespace by default."""
    if kubeconfig:
        api = config.new_client_from_config(config_file=kubeconfig)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        api = client.ApiClient()
    if namespace is None:
        try:
            _, active = config.list_kube_config_contexts(config_file=kubeconfig)
            namespace = (active or {}).get("context", {}).get("namespace") or "default"
        except config.ConfigException:
            namespace = "default"
    return Target(client.CustomObjectsApi(api), namespace)
