"""The sandbox's gateway: Gateway API ``HTTPRoute`` (v1) over the sandbox's
Services, as a local HTTP reverse proxy.

Each request picks the route whose ``hostnames`` match its Host header (a
route without hostnames matches any) and whose rule matches its path (a
``PathPrefix`` match, ``/`` by default; the longest prefix wins), then a
``backendRef`` at random in proportion to its ``weight`` (default 1; weight 0
never receives a request), then a ready endpoint of that Service in turn.
Routes and weights are read from the store on every request, so a weight
change applies to the next request. ``parentRefs`` are not checked: every
route is served by this one gateway.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp import web

from relearn.sandbox.store import Store

logger = logging.getLogger(__name__)
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


class Gateway:
    def __init__(self, store: Store, *, rng: random.Random | None = None) -> None:
        self.store = store
        self.rng = rng or random.Random()
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None

    def application(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._proxy)
        app.on_startup.append(self._open)
        app.on_cleanup.append(self._close)
        return app

    async def _open(self, _: web.Application) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60), auto_decompress=False)

    async def _close(self, _: web.Application) -> None:
        if self._session:
            await self._session.close()

    def choose(self, host: str, path: str) -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
        """The (route, backendRef) a request goes to, or None when nothing matches."""
        host = host.split(":")[0].lower()
        best: tuple[int, Mapping[str, Any], Mapping[str, Any]] | None = None
        for route in self.store.objects("gateway.networking.k8s.io", "httproutes"):
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
        endpoints = self.store.try_get("", "endpoints", ref.get("namespace") or namespace, ref["name"])
        service = self.store.try_get("", "services", ref.get("namespace") or namespace, ref["name"])
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
