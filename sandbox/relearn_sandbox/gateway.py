"""The sandbox's gateway: Gateway API ``HTTPRoute`` (v1) over the sandbox's
Services, as a local HTTP reverse proxy.

Each request picks the route whose ``hostnames`` match its Host header (a
route without hostnames matches any) and whose rule matches its path (a
``PathPrefix`` match, ``/`` by default; the longest prefix wins), then a
``backendRef`` at random in proportion to its ``weight`` (default 1; weight 0
never receives a request), then a ready endpoint of that Service in turn.
Routes and weights are read on every request, so without ``lag`` a weight
change applies to the next request. ``parentRefs`` are not checked: every
route is served by this one gateway.

A real data plane learns of changes late (Istio debounces pushes, Envoy
Gateway applies xDS updates asynchronously). ``lag`` seconds emulate that:
the gateway then routes by HTTPRoutes, Services and Endpoints as they were
``lag`` seconds ago (changes applied in order), so what an operator does too
early (deleting a backend the proxy still sends to) fails here as on a real
cluster. Like a real implementation, the gateway reports each route it has
applied in ``status.parents`` (Accepted, ResolvedRefs, with the route's
``observedGeneration``), for every parentRef, or for itself when the route
names none.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from relearn_sandbox.errors import ApiError
from relearn_sandbox.store import Change, Store, now_rfc3339

logger = logging.getLogger(__name__)
CONTROLLER = "relearn.dev/sandbox-gateway"
SELF_REF = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "sandbox"}
WATCHED = (("gateway.networking.k8s.io", "httproutes"), ("", "services"), ("", "endpoints"))
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Gateway:
    def __init__(self, store: Store, *, rng: random.Random | None = None, lag: float = 0.0) -> None:
        self.store = store
        self.rng = rng or random.Random()
        self.lag = max(0.0, lag)
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        # What the data plane knows: (group, plural) -> (namespace, name) -> object, ``lag`` s behind the store.
        self._view: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[asyncio.TimerHandle] = set()

    def start(self) -> None:
        """Follow the store (call on the running loop): route status, and the lagging view."""
        self._loop = asyncio.get_running_loop()
        for key in WATCHED:
            self._view[key] = {
                (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in self.store.objects(*key)
            }
        self.store.subscribe(self._on_change)
        for route in self.store.objects("gateway.networking.k8s.io", "httproutes"):
            self._report(route)

    def _on_change(self, change: Change) -> None:
        if change.key not in WATCHED or self._loop is None:
            return
        obj = copy.deepcopy(change.obj)
        if self.lag <= 0:
            self._loop.call_soon(self._apply, change.key, change.type, obj)
            return
        if len(self._pending) > 1000:
            self._pending = {h for h in self._pending if h.when() > self._loop.time()}
        self._pending.add(self._loop.call_later(self.lag, self._apply, change.key, change.type, obj))

    def _apply(self, key: tuple[str, str], type_: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        where = (meta.get("namespace", ""), meta["name"])
        if type_ == "DELETED":
            self._view.setdefault(key, {}).pop(where, None)
            return
        self._view.setdefault(key, {})[where] = obj
        if key == ("gateway.networking.k8s.io", "httproutes"):
            self._report(obj)

    def _report(self, route: Mapping[str, Any]) -> None:
        """Write ``status.parents`` for a route as this gateway has applied it."""
        meta = route["metadata"]
        namespace, generation = meta.get("namespace", ""), meta.get("generation", 1)
        missing = sorted(
            {
                str(ref.get("name"))
                for rule in (route.get("spec") or {}).get("rules") or ()
                for ref in rule.get("backendRefs") or ()
                if (ref.get("namespace") or namespace, ref.get("name")) not in self._view.get(("", "services"), {})
            }
        )
        resolved = {
            "type": "ResolvedRefs",
            "status": "False" if missing else "True",
            "reason": "BackendNotFound" if missing else "ResolvedRefs",
            "message": f"no Service {', '.join(missing)}" if missing else "every backendRef resolves",
            "observedGeneration": generation,
        }
        accepted = {
            "type": "Accepted",
            "status": "True",
            "reason": "Accepted",
            "message": "applied by the sandbox gateway",
            "observedGeneration": generation,
        }
        parents = [
            {"parentRef": dict(ref), "controllerName": CONTROLLER, "conditions": [accepted, resolved]}
            for ref in (route.get("spec") or {}).get("parentRefs") or [SELF_REF]
        ]
        current = self.store.try_get("gateway.networking.k8s.io", "httproutes", namespace, meta["name"])
        if current is None or current["metadata"].get("generation", 1) < generation:
            return
        old = [
            {
                **p,
                "conditions": [
                    {k: v for k, v in c.items() if k != "lastTransitionTime"} for c in p.get("conditions") or ()
                ],
            }
            for p in (current.get("status") or {}).get("parents") or ()
        ]
        if old == parents:
            return
        stamp = now_rfc3339()
        for parent in parents:
            for condition in parent["conditions"]:
                condition["lastTransitionTime"] = stamp
        rt = self.store.type_for("gateway.networking.k8s.io", "httproutes")
        try:
            self.store.patch(
                rt,
                namespace,
                meta["name"],
                "application/merge-patch+json",
                {"status": {"parents": parents}},
                subresource="status",
            )
        except ApiError as error:
            logger.debug("route status of %s/%s not written: %s", namespace, meta["name"], error.message)

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()

    def _objects(self, group: str, plural: str) -> list[dict[str, Any]]:
        if self.lag <= 0 or self._loop is None:
            return self.store.objects(group, plural)
        return list(self._view.get((group, plural), {}).values())

    def _get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.lag <= 0 or self._loop is None:
            return self.store.try_get(group, plural, namespace, name)
        return self._view.get((group, plural), {}).get((namespace, name))

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        if self._loop is None:
            self.start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)

    async def _close(self, _: web.Application) -> None:
        self.close()
        if self._session:
            await self._session.close()

    def choose(self, host: str, path: str) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
        """The (route, backendRef) a request goes to, or None when nothing matches."""
        host = host.split(":")[0].lower()
        best: tuple[int, Mapping[str, Any], Mapping[str, Any]] | None = None
        for route in self._objects("gateway.networking.k8s.io", "httproutes"):
            hostnames = [h.lower() for h in route.get("spec", {}).get("hostnames") or ()]
            if hostnames and host not in hostnames:
                continue
            for rule in route.get("spec", {}).get("rules") or ():
                for prefix in _prefixes(rule):
                    if path.startswith(prefix) and (best is None or len(prefix) > best[0]):
                        best = (len(prefix), route, rule)
        if best is None:
            return None
        _, chosen_route, chosen_rule = best
        refs = [r for r in chosen_rule.get("backendRefs") or () if int(r.get("weight", 1)) > 0]
        if not refs:
            return None
        ref = self.rng.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
        return chosen_route, ref

    def endpoint(self, namespace: str, ref: Mapping[str, Any]) -> str | None:
        """``127.0.0.1:port`` of a ready pod behind the backendRef's Service."""
        endpoints = self._get("", "endpoints", ref.get("namespace") or namespace, ref["name"])
        service = self._get("", "services", ref.get("namespace") or namespace, ref["name"])
        if endpoints is None or service is None:
            return None
        wanted = ref.get("port")
        port_name = next(
            (
                p.get("name", "")
                for p in service["spec"].get("ports") or ()
                if wanted is None or p.get("port") == wanted
            ),
            None,
        )
        addresses = [
            f"{a['ip']}:{p['port']}"
            for subset in endpoints.get("subsets") or ()
            for a in subset.get("addresses") or ()
            for p in subset.get("ports") or ()
            if port_name is None or p.get("name", "") == port_name
        ]
        if not addresses:
            return None
        return addresses[next(self._turn) % len(addresses)]

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        choice = self.choose(request.host, request.path)
        if choice is None:
            return web.Response(status=404, text="no HTTPRoute matches this request\n")
        route, ref = choice
        address = self.endpoint(route["metadata"]["namespace"], ref)
        if address is None:
            return web.Response(status=503, text=f"no ready endpoint for service {ref['name']}\n")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        headers["X-Relearn-Backend"] = ref["name"]
        try:
            async with self._session.request(
                request.method, f"http://{address}{request.rel_url}", headers=headers, data=await request.read()
            ) as upstream:
                body = await upstream.read()
                response = web.Response(
                    status=upstream.status,
                    body=body,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
                )
                response.headers["X-Relearn-Backend"] = ref["name"]
                return response
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.Response(status=502, text=f"backend {ref['name']} at {address} failed: {error}\n")


def _prefixes(rule: Mapping[str, Any]) -> list[str]:
    matches = rule.get("matches") or [{}]
    return [((m.get("path") or {}).get("value") or "/") for m in matches]
