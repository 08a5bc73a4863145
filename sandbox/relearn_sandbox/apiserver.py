"""The sandbox's Kubernetes API server: the HTTP face of :mod:`.store`.

Serves discovery (``/api``, ``/apis``, group/version resource lists), the
REST verbs on every resource path (``/api/v1/namespaces/NS/pods/NAME``,
``/apis/GROUP/VERSION/...``, subresources ``status``, pod ``log``,
deployment ``scale``), watches as chunked JSON lines with resume, timeouts
and bookmarks, Table output for ``kubectl get`` (``includeObject`` for
``--sort-by``), server-side dry-run from the query or the DeleteOptions body,
JSON, YAML and (for built-in kinds, see :mod:`.protobuf`) protobuf request
bodies, strict field validation for custom resources, and optional
bearer-token authentication. Every resource request is logged with its
caller's identity and RBAC verb, and an identity can be held to RBAC rules
(:mod:`.audit`); status writes can be made to fail for a while (fault
injection for the chaos bench and tests). It reports itself as v1.33. kubectl 1.30-1.33,
the ``kubernetes`` client and kopf all speak to it as to a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from aiohttp import web
from relearn.api.openapi import FieldError

from relearn_sandbox import errors, protobuf, tables
from relearn_sandbox.audit import ADMIN, ApiCall, Audit, verb_of
from relearn_sandbox.errors import ApiError
from relearn_sandbox.patching import APPLY_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, PatchError, apply_patch
from relearn_sandbox.podlogs import LogOptions
from relearn_sandbox.ports import PORTS_ANNOTATION
from relearn_sandbox.resources import ResourceType
from relearn_sandbox.selectors import SelectorError, parse_field_selector, parse_label_selector
from relearn_sandbox.store import Store, Watch

logger = logging.getLogger(__name__)

# (namespace, pod, options) -> chunks of the pod's output
LogSource = Callable[[str, str, LogOptions], AsyncIterator[bytes]]

VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.1-relearn-sandbox",
    "gitCommit": "",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "n/a",
    "compiler": "relearn",
    "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Target:
    """What a resource path addresses."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


class ApiServer:
    def __init__(
        self,
        store: Store,
        *,
        token: str | None = None,
        identities: Mapping[str, str] | None = None,
        audit: Audit | None = None,
        log_source: LogSource | None = None,
        bookmark_interval: float = 5.0,
        max_watch_seconds: float = 1800.0,
    ) -> None:
        self.store = store
        self.token = token
        # Bearer tokens of other identities than the admin's (the operator's kubeconfig).
        self.identities = dict(identities or {})
        self.audit = audit if audit is not None else Audit()
        # (until, HTTP code): status writes (PUT/PATCH of */status) fail until then (time.monotonic()).
        self.failing_status_writes: tuple[float, int] | None = None
        self.log_source = log_source
        self.bookmark_interval = bookmark_interval
        self.max_watch_seconds = max_watch_seconds
        self._closing = asyncio.Event()

    def application(self) -> web.Application:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._dispatch)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _: web.Application) -> None:
        self._closing.set()
        self.store.end_watches()

    # -- dispatch ---------------------------------------------------------

    def fail_status_writes(self, seconds: float, code: int = 503) -> None:
        """Answer ``code`` to every status write (PUT or PATCH of a ``status``
        subresource) for the next ``seconds``; 0 ends it."""
        self.failing_status_writes = (time.monotonic() + seconds, code) if seconds > 0 else None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        call: ApiCall | None = None
        code = 500
        try:
            user = self._authenticate(request)
            parts = [p for p in request.path.split("/") if p]
            if request.method == "GET" and parts == ["openapi", "v2"]:
                return _openapi_v2(request)
            if request.method == "GET":
                discovery = self._discovery(parts)
                if discovery is not None:
                    return web.json_response(discovery)
            target = self._target(parts)
            call = _call(request, user, target)
            if not self.audit.allowed(call):
                raise errors.forbidden(call)
            self._inject_faults(call)
            if call.verb == "watch":  # a watch lasts: logged when it starts
                self.audit.record(call)
                call = None
            response = await self._serve(request, target)
            code = response.status
            return response
        except ApiError as error:
            code = error.code
            return web.json_response(error.status(), status=error.code)
        except SelectorError as error:
            code = 400
            return web.json_response(errors.bad_request(str(error)).status(), status=400)
        finally:
            if call is not None:
                self.audit.record(dataclasses.replace(call, code=code))

    def _authenticate(self, request: web.Request) -> str:
        """The caller's identity, from its bearer token (:mod:`.audit`)."""
        if request.path in ("/healthz", "/livez", "/readyz"):
            return ADMIN
        header = request.headers.get("Authorization")
        if header is None and self.token is None:
            return ADMIN
        token = header.removeprefix("Bearer ") if header and header.startswith("Bearer ") else None
        if token is not None and token in self.identities:
            return self.identities[token]
        if token is not None and token == self.token:
            return ADMIN
        raise errors.unauthorized()

    def _inject_faults(self, call: ApiCall) -> None:
        if self.failing_status_writes is None or call.subresource != "status" or call.verb not in ("update", "patch"):
            return
        until, code = self.failing_status_writes
        if time.monotonic() >= until:
            self.failing_status_writes = None
            return
        reason = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}.get(code, "InternalError")
        raise ApiError(code, reason, f"status writes are failing (sandbox fault injection): {call.rbac_resource}")

    def _discovery(self, parts: list[str]) -> dict[str, Any] | str | None:
        if parts in (["healthz"], ["livez"], ["readyz"]):
            return "ok"
        if not parts:
            return {"paths": ["/api", "/apis", "/version", "/healthz"]}
        if parts == ["version"]:
            return VERSION_INFO
        if parts[:2] == ["openapi", "v3"]:
            return self._openapi_v3(parts[2:])
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()}
        if len(parts) == 2 and parts[0] == "apis":
            found = next((g for g in self._groups() if g["name"] == parts[1]), None)
            if found is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {"kind": "APIGroup", "apiVersion": "v1", **found}
        if parts == ["api", "v1"] or (len(parts) == 3 and parts[0] == "apis"):
            group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            resources = [
                entry
                for rt in self.store.resource_types()
                if rt.group == group and rt.version == version
                for entry in rt.discovery_entries()
            ]
            if not resources:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            }
        return None

    def _openapi_v3(self, gv_parts: list[str]) -> dict[str, Any]:
        """Just enough OpenAPI v3 for kubectl: the index of group-versions, and
        per group-version the POST/PATCH operations with their GVK and the
        ``fieldValidation`` parameter, so kubectl leaves validation to this
        server (CRD schemas) instead of validating on the client. No
        component schemas: ``kubectl explain`` is not supported."""
        group_versions = sorted({(rt.group, rt.version) for rt in self.store.resource_types()})

        def prefix(group: str, version: str) -> str:
            return f"apis/{group}/{version}" if group else f"api/{version}"

        if not gv_parts:
            return {
                "paths": {prefix(g, v): {"serverRelativeURL": f"/openapi/v3/{prefix(g, v)}"} for g, v in group_versions}
            }
        group, version = ("", gv_parts[1]) if gv_parts[0] == "api" else (gv_parts[1], gv_parts[2])
        parameters = [
            {"name": p, "in": "query", "schema": {"type": "string"}}
            for p in ("dryRun", "fieldManager", "fieldValidation")
        ]
        paths: dict[str, Any] = {}
        for rt in self.store.resource_types():
            if (rt.group, rt.version) != (group, version):
                continue
            gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
            scope = "/namespaces/{namespace}" if rt.namespaced else ""
            collection = f"/{prefix(group, version)}{scope}/{rt.plural}"
            operation = {"x-kubernetes-group-version-kind": gvk, "parameters": parameters, "responses": {}}
            paths[collection] = {"post": operation, "parameters": parameters}
            paths[f"{collection}/{{name}}"] = {"patch": operation, "put": operation, "parameters": parameters}
        if not paths:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes (relearn sandbox)", "version": VERSION_INFO["gitVersion"]},
            "paths": paths,
            "components": {"schemas": {}},
        }

    def _groups(self) -> list[dict[str, Any]]:
        versions: dict[str, list[str]] = {}
        for rt in self.store.resource_types():
            if rt.group and rt.version not in versions.setdefault(rt.group, []):
                versions[rt.group].append(rt.version)
        return [
            {
                "name": group,
                "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in vs],
                "preferredVersion": {"groupVersion": f"{group}/{vs[0]}", "version": vs[0]},
            }
            for group, vs in sorted(versions.items())
        ]

    def _target(self, parts: list[str]) -> Target:
        if len(parts) >= 3 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 4 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        rt = self.store.type_for(group, rest[0], version)
        if namespace is not None and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        known = (None, "finalize", *(("status",) if rt.has_status else ()), *rt.extra_subresources)
        if subresource not in known:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Target(rt, namespace, name, subresource)

    # -- verbs ------------------------------------------------------------

    async def _serve(self, request: web.Request, target: Target) -> web.StreamResponse:
        query = request.query
        dry_run = _dry_run(query.getall("dryRun", []))
        rt, namespace, name = target.rt, target.namespace, target.name
        method = request.method
        if name is None:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(query.get("fieldSelector"))
            if method == "GET" and query.get("watch") in ("true", "1"):
                return await self._watch(request, target, labels, fields)
            if method == "GET":
                items, rv = self.store.list_objects(rt, namespace, labels, fields)
                if _wants_table(request):
                    return web.json_response(tables.table(rt, items, rv, include=_include(query)))
                return web.json_response(
                    {
                        "kind": f"{rt.kind}List",
                        "apiVersion": rt.api_version,
                        "metadata": {"resourceVersion": rv},
                        "items": items,
                    }
                )
            if method == "POST":
                body = await _body(request, rt)
                self._check_fields(rt, body, query)
                return web.json_response(self.store.create(rt, namespace, body, dry_run=dry_run), status=201)
            if method == "DELETE":
                options = await _body(request, optional=True)
                deleted = self.store.delete_collection(
                    rt,
                    namespace,
                    labels,
                    fields,
                    propagation=query.get("propagationPolicy") or options.get("propagationPolicy"),
                    dry_run=dry_run or _dry_run(options.get("dryRun") or []),
                )
                return web.json_response(
                    {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": {}, "items": deleted}
                )
            raise errors.method_not_allowed(f"{method} is not allowed on a collection")
        if target.subresource == "log":
            return await self._log(request, target)
        if target.subresource == "scale":
            return await self._scale(request, target, dry_run)
        if target.subresource == "portforward":
            raise self._no_port_forward(target)
        subresource = target.subresource if target.subresource == "status" else None
        if method == "GET":
            obj = self.store.get(rt, namespace, name)
            if _wants_table(request):
                return web.json_response(
                    tables.table(rt, [obj], obj["metadata"].get("resourceVersion"), include=_include(query))
                )
            return web.json_response(obj)
        if method == "PUT":
            body = await _body(request, rt)
            self._check_fields(rt, body, query)
            return web.json_response(
                self.store.update(rt, namespace, name, body, subresource=subresource, dry_run=dry_run)
            )
        if method == "PATCH":
            return await self._patch(request, target, dry_run)
        if method == "DELETE":
            # kubectl sends DeleteOptions in the body: dryRun there counts as in the query.
            options = await _body(request, optional=True)
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            precondition = (options.get("preconditions") or {}).get("resourceVersion")
            dry_run = dry_run or _dry_run(options.get("dryRun") or [])
            return web.json_response(
                self.store.delete(
                    rt, namespace, name, propagation=propagation, precondition_rv=precondition, dry_run=dry_run
                )
            )
        raise errors.method_not_allowed(f"{method} is not allowed on {rt.plural}/{name}")

    async def _patch(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        rt, namespace, name = target.rt, target.namespace, target.name
        assert name is not None
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        subresource = target.subresource if target.subresource == "status" else None
        if content_type == APPLY_PATCH:
            # Server-side apply, approximated: create when absent, else merge
            # (no managed fields, no conflict detection; see docs/sandbox.md).
            body = await _body(request, rt)
            self._check_fields(rt, body, request.query)
            try:
                self.store.get(rt, namespace, name)
            except ApiError as error:
                if error.code != 404 or subresource:
                    raise
                return web.json_response(self.store.create(rt, namespace, body, dry_run=dry_run), status=201)
            content_type = MERGE_PATCH if rt.is_custom else STRATEGIC_MERGE_PATCH
            return web.json_response(
                self.store.patch(rt, namespace, name, content_type, body, subresource=subresource, dry_run=dry_run)
            )
        patch = await _body(request)
        if content_type == MERGE_PATCH and isinstance(patch, dict):
            self._check_fields(rt, patch, request.query, partial=True)
        return web.json_response(
            self.store.patch(rt, namespace, name, content_type, patch, subresource=subresource, dry_run=dry_run)
        )

    def _check_fields(self, rt: ResourceType, body: Any, query: Mapping[str, str], *, partial: bool = False) -> None:
        """``fieldValidation=Strict``: unknown fields of a custom resource are errors, not pruned."""
        if rt.schema is None or query.get("fieldValidation") != "Strict" or not isinstance(body, Mapping):
            return
        from relearn.api.openapi import unknown_fields

        unknown = unknown_fields(rt.schema, body)
        if unknown:
            name = (body.get("metadata") or {}).get("name", "")
            raise errors.invalid(rt, name, [FieldError(path, "field not declared in schema") for path in unknown])

    async def _watch(self, request: web.Request, target: Target, labels: Any, fields: Any) -> web.StreamResponse:
        rt = target.rt
        query = request.query
        as_table = _wants_table(request)
        include = _include(query)
        watch = Watch((rt.group, rt.plural), target.namespace, labels, fields)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            initial = self.store.open_watch(watch, query.get("resourceVersion"))
        except ApiError as error:
            await _send(response, {"type": "ERROR", "object": error.status()})
            return response
        timeout = min(float(query.get("timeoutSeconds") or self.max_watch_seconds), self.max_watch_seconds)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first = True

        def event(type_: str, obj: dict[str, Any]) -> dict[str, Any]:
            nonlocal first
            presented = self.store._present(rt, obj)
            if as_table:
                presented = tables.table(
                    rt, [presented], presented["metadata"].get("resourceVersion"), with_columns=first, include=include
                )
            first = False
            return {"type": type_, "object": presented}

        try:
            for type_, obj in initial:
                await _send(response, event(type_, obj))
            while not self._closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    change = await asyncio.wait_for(watch.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        await _send(
                            response,
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": rt.kind,
                                    "apiVersion": rt.api_version,
                                    "metadata": {"resourceVersion": str(self.store.resource_version)},
                                },
                            },
                        )
                    continue
                if change is None:
                    break
                found = watch.event_for(change)
                if found and as_table:
                    await _send(response, event(*found))
                elif found:
                    cache = (rt.api_version, found[0])
                    if cache not in change.encoded:  # serialised once, whatever the number of watchers
                        change.encoded[cache] = _encode(event(*found))
                    await response.write(change.encoded[cache])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.close_watch(watch)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    async def _log(self, request: web.Request, target: Target) -> web.StreamResponse:
        if target.rt.plural != "pods" or request.method != "GET":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        assert target.name is not None
        assert target.namespace is not None
        self.store.get(target.rt, target.namespace, target.name)
        if self.log_source is None:
            raise ApiError(404, "NotFound", "this sandbox runs no kubelet: pods have no logs")
        options = LogOptions.from_query(request.query)
        chunks = aiter(self.log_source(target.namespace, target.name, options))
        # The first read raises the kubelet's errors (no such container, no previous run) as a Status.
        first = await anext(chunks, b"")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
            await response.write_eof()
        return response

    async def _scale(self, request: web.Request, target: Target, dry_run: bool) -> web.StreamResponse:
        """``deployments/NAME/scale``: an ``autoscaling/v1`` Scale over ``spec.replicas`` (``kubectl scale``)."""
        rt, namespace, name = target.rt, target.namespace, target.name
        assert name is not None
        deployment = self.store.get(rt, namespace, name)
        if request.method == "GET":
            return web.json_response(_scale_of(deployment))
        if request.method == "PUT":
            wanted = await _body(request)
        elif request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if content_type == APPLY_PATCH:
                content_type = MERGE_PATCH
            try:
                wanted = apply_patch(content_type, _scale_of(deployment), await _body(request))
            except PatchError as error:
                raise ApiError(422, "Invalid", str(error)) from error
        else:
            raise errors.method_not_allowed(f"{request.method} is not allowed on {rt.plural}/{name}/scale")
        wanted_rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != deployment["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        replicas = (wanted.get("spec") or {}).get("replicas", 0)  # omitempty in Go: absent is 0
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise errors.invalid(rt, name, [FieldError("spec.replicas", "must be a non-negative integer", replicas)])
        scaled = self.store.patch(rt, namespace, name, MERGE_PATCH, {"spec": {"replicas": replicas}}, dry_run=dry_run)
        return web.json_response(_scale_of(scaled))

    def _no_port_forward(self, target: Target) -> ApiError:
        """``kubectl port-forward`` needs a SPDY or WebSocket stream; this
        sandbox's pods are processes already listening on 127.0.0.1, so the
        answer names where to connect instead."""
        assert target.name is not None
        pod = self.store.get(target.rt, target.namespace, target.name)
        ports = json.loads((pod["metadata"].get("annotations") or {}).get(PORTS_ANNOTATION, "{}"))
        where = ", ".join(f"container port {port} is 127.0.0.1:{local}" for port, local in ports.items())
        return errors.bad_request(
            f"the relearn sandbox does not forward ports: pod {target.name} is a process on this machine"
            + (f"; its {where}: connect there directly" if where else " and listens on no container port")
        )


def _call(request: web.Request, user: str, target: Target) -> ApiCall:
    watch = target.name is None and request.query.get("watch") in ("true", "1")
    return ApiCall(
        user=user,
        verb=verb_of(request.method, named=target.name is not None, watch=watch),
        group=target.rt.group,
        resource=target.rt.plural,
        subresource=target.subresource,
        namespace=target.namespace,
        name=target.name,
        code=200,
        at=time.monotonic(),
    )


OPENAPI_V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _openapi_v2(request: web.Request) -> web.Response:
    """An OpenAPI v2 document with no definitions. kubectl validates a kind
    that the v3 document lacks (a custom resource applied before its CRD)
    against v2, which it fetches as protobuf; finding no schema there it skips
    validation, so the user sees the REST mapping's "no matches for kind"
    ("ensure CRDs are installed first") as from a real server."""
    info = {"title": "Kubernetes (relearn sandbox)", "version": VERSION_INFO["gitVersion"]}
    if OPENAPI_V2_PROTOBUF in request.headers.get("Accept", ""):
        title, version = (text.encode() for text in info.values())
        encoded_info = b"\x0a" + bytes([len(title)]) + title + b"\x12" + bytes([len(version)]) + version
        # openapi_v2.Document: swagger (1) "2.0", info (2).
        body = b"\x0a\x032.0\x12" + bytes([len(encoded_info)]) + encoded_info
        return web.Response(body=body, content_type="application/octet-stream")  # as kube-openapi serves it
    return web.json_response({"swagger": "2.0", "info": info, "paths": {}, "definitions": {}})


def _scale_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    meta = deployment["metadata"]
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int(status.get("replicas", 0)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        },
    }


def _wants_table(request: web.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def _include(query: Mapping[str, str]) -> str:
    """What each Table row carries: ``Metadata`` (the default), ``Object`` (kubectl
    asks for it to ``--sort-by`` any field) or ``None``."""
    include = query.get("includeObject") or "Metadata"
    if include not in ("Metadata", "Object", "None"):
        raise errors.bad_request(
            f'includeObject: Unsupported value: "{include}": supported values: "Metadata", "Object", "None"'
        )
    return include


def _dry_run(values: Any) -> bool:
    """``dryRun`` from the query or from DeleteOptions: only ``All`` is defined."""
    if isinstance(values, str):
        values = [values]
    for value in values:
        if value != "All":
            raise errors.bad_request(f'Invalid dry run option: Unsupported value: "{value}": supported values: "All"')
    return bool(values)


async def _body(request: web.Request, rt: ResourceType | None = None, *, optional: bool = False) -> Any:
    """The request's object: JSON, YAML, or protobuf for built-in kinds (kubectl 1.32+ sends it)."""
    raw = await request.read()
    if not raw:
        if optional:
            return {}
        raise errors.bad_request("the request has no body")
    content_type = request.headers.get("Content-Type", "")
    if protobuf.is_protobuf(content_type):
        if rt is not None and rt.is_custom:
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml"
            )
        try:
            return protobuf.decode(raw)
        except protobuf.UnsupportedKind as error:
            raise errors.unsupported_media_type(str(error)) from error
        except protobuf.ProtobufError as error:
            raise errors.bad_request(f"the request body is not valid protobuf: {error}") from error
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as error:
        raise errors.bad_request(f"the request body is not valid JSON or YAML: {error}") from error


def _encode(event: Mapping[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


async def _send(response: web.StreamResponse, event: Mapping[str, Any]) -> None:
    await response.write(_encode(event))
