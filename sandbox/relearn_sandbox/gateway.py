"""The sandbox's gateway: Gateway API ``HTTPRoute`` (v1) over the sandbox's
Services, as a local HTTP reverse proxy.

Each request picks the route whose ``hostnames`` match its Host header (a
route without hostnames matches any) and whose rule matches its path (a
``PathPrefix`` match, ``/`` by default) and headers (``Exact`` or
``RegularExpression``, matched against the whole value as Envoy does; the
longest prefix wins, then the most header matches, as the API orders them),
then a ``backendRef`` at random in proportion to its ``weight`` (default 1;
weight 0 never receives a request), then a ready endpoint of that Service in
turn. Two filters are implemented: a rule's ``RequestMirror`` (a copy of the
request to its backendRef, for ``percent`` or ``fraction`` of requests, with
``-shadow`` appended to the Host as Envoy does; its answer is discarded and
never delays the client's) and ``ResponseHeaderModifier`` (add, set,
remove) on a rule or a backendRef, which sticky routes use to mark responses.
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
import re
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
        self._copies: set[asyncio.Future[None]] = set()  # mirrored requests under way

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
        for task in self._copies:
            task.cancel()

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

    def choose(
        self, host: str, path: str, headers: Mapping[str, str] | None = None
    ) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
        """The (route, backendRef) a request goes to, or None when nothing matches."""
        chosen = self.choose_rule(host, path, headers or {})
        return None if chosen is None else (chosen[0], chosen[2])

    def choose_rule(
        self, host: str, path: str, headers: Mapping[str, str]
    ) -> tuple[Mapping[str, Any], Mapping[str, Any], Mapping[str, Any]] | None:
        """The (route, rule, backendRef) a request goes to, or None when nothing matches."""
        host = host.split(":")[0].lower()
        lowered = {k.lower(): v for k, v in headers.items()}
        best: tuple[tuple[int, int], Mapping[str, Any], Mapping[str, Any]] | None = None
        for route in self._objects("gateway.networking.k8s.io", "httproutes"):
            hostnames = [h.lower() for h in route.get("spec", {}).get("hostnames") or ()]
            if hostnames and host not in hostnames:
                continue
            for rule in route.get("spec", {}).get("rules") or ():
                for match in rule.get("matches") or [{}]:
                    prefix = (match.get("path") or {}).get("value") or "/"
                    wanted = match.get("headers") or ()
                    if not path.startswith(prefix) or not all(_header_matches(h, lowered) for h in wanted):
                        continue
                    key = (len(prefix), len(wanted))
                    if best is None or key > best[0]:
                        best = (key, route, rule)
        if best is None:
            return None
        _, chosen_route, chosen_rule = best
        refs = [r for r in chosen_rule.get("backendRefs") or () if int(r.get("weight", 1)) > 0]
        if not refs:
            return None
        ref = self.rng.choices(refs, weights=[int(r.get("weight", 1)) for r in refs])[0]
        return chosen_route, chosen_rule, ref

    def mirrors(self, rule: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The backendRefs this request is copied to (each RequestMirror filter draws on its own)."""
        chosen = []
        for entry in rule.get("filters") or ():
            if entry.get("type") != "RequestMirror":
                continue
            mirror = entry.get("requestMirror") or {}
            if "percent" in mirror:
                share = float(mirror["percent"]) / 100
            elif mirror.get("fraction"):
                fraction = mirror["fraction"]
                share = float(fraction.get("numerator", 0)) / float(fraction.get("denominator", 100))
            else:
                share = 1.0
            if mirror.get("backendRef") and self.rng.random() < share:
                chosen.append(mirror["backendRef"])
        return chosen

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
        choice = self.choose_rule(request.host, request.path, request.headers)
        if choice is None:
            return web.Response(status=404, text="no HTTPRoute matches this request\n")
        route, rule, ref = choice
        namespace = route["metadata"]["namespace"]
        address = self.endpoint(namespace, ref)
        if address is None:
            return web.Response(status=503, text=f"no ready endpoint for service {ref['name']}\n")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read()
        for mirror in self.mirrors(rule):
            self._copy(namespace, mirror, request, headers, body)
        headers["X-Relearn-Backend"] = ref["name"]
        try:
            async with self._session.request(
                request.method, f"http://{address}{request.rel_url}", headers=headers, data=body
            ) as upstream:
                answer = await upstream.read()
                response = web.Response(
                    status=upstream.status,
                    body=answer,
                    headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
                )
                response.headers["X-Relearn-Backend"] = ref["name"]
                for entry in [*(rule.get("filters") or ()), *(ref.get("filters") or ())]:
                    if entry.get("type") == "ResponseHeaderModifier":
                        _modify_headers(response, entry.get("responseHeaderModifier") or {})
                return response
        except (aiohttp.ClientError, TimeoutError) as error:
            return web.Response(status=502, text=f"backend {ref['name']} at {address} failed: {error}\n")

    def _copy(
        self, namespace: str, ref: Mapping[str, Any], request: web.Request, headers: Mapping[str, str], body: bytes
    ) -> None:
        """Send a copy of the request to a mirror, in the background; its answer is discarded."""
        address = self.endpoint(namespace, ref)
        if address is None or self._session is None:
            return
        copied = {**headers, "Host": f"{request.host}-shadow", "X-Relearn-Backend": str(ref.get("name"))}
        task = asyncio.ensure_future(
            self._send_copy(request.method, f"http://{address}{request.rel_url}", copied, body)
        )
        self._copies.add(task)
        task.add_done_callback(self._copies.discard)

    async def copies_sent(self) -> None:
        """Wait until every mirrored request under way has been answered (tests, demos)."""
        while self._copies:
            await asyncio.gather(*list(self._copies), return_exceptions=True)

    async def _send_copy(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> None:
        assert self._session is not None
        try:
            async with self._session.request(method, url, headers=dict(headers), data=body) as upstream:
                await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            logger.debug("mirrored request to %s failed: %s", url, error)


def _header_matches(match: Mapping[str, Any], headers: Mapping[str, str]) -> bool:
    """One HTTPHeaderMatch against the request's headers (names lowercased)."""
    value = headers.get(str(match.get("name", "")).lower())
    if value is None:
        return False
    if match.get("type", "Exact") == "RegularExpression":
        try:
            return re.fullmatch(str(match.get("value", "")), value) is not None
        except re.error:
            return False
    return bool(value == match.get("value"))


def _modify_headers(response: web.Response, modifier: Mapping[str, Any]) -> None:
    """A ResponseHeaderModifier: set replaces, add appends (Set-Cookie stays one line per cookie), remove drops."""
    for header in modifier.get("set") or ():
        response.headers[str(header["name"])] = str(header["value"])
    for header in modifier.get("add") or ():
        response.headers.add(str(header["name"]), str(header["value"]))
    for name in modifier.get("remove") or ():
        response.headers.popall(str(name), None)
