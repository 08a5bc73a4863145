"""The sandbox gateway mirrors and keeps clients on one arm for real: two
model servers on loopback behind a route that the operator's own Gateway API
router wrote (a shadow stage's RequestMirror; sticky cookies)."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from relearn.adapters.routers import Backend, Split
from relearn.adapters.routers.gateway_api import GatewayAPIRouter
from relearn.api.abexperiment import Stickiness
from relearn_sandbox.gateway import Gateway
from relearn_sandbox.store import Store

GROUP = "gateway.networking.k8s.io"
SPLIT = Split(Backend("1.0.0", "champion", "champion"), Backend("1.1.0", "challenger", "challenger"))


@dataclass
class Server:
    """A model server that says which version answered and remembers what it was sent."""

    version: str
    port: int = 0
    hosts: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    async def answer(self, request: web.Request) -> web.Response:
        self.hosts.append(request.host)
        self.bodies.append(await request.read())
        return web.json_response({"version": self.version})


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, shutdown_timeout=0.5, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


@pytest.fixture
async def plane() -> AsyncIterator[tuple[Store, Gateway, dict[str, Server], str]]:
    store = Store()
    store.create(
        store.type_for("", "namespaces"), None, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}
    )
    servers = {"champion": Server("1.0.0"), "challenger": Server("1.1.0")}
    runners = []
    for name, server in servers.items():
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", server.answer)
        runner, server.port = await _serve(app)
        runners.append(runner)
        meta = {"name": name, "namespace": "ns"}
        store.create(
            store.type_for("", "services"),
            "ns",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"ports": [{"name": "http", "port": 80}]},
            },
        )
        endpoints = {
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "http", "port": server.port}]}]
        }
        store.create(
            store.type_for("", "endpoints"),
            "ns",
            {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta, **endpoints},
        )
    gateway = Gateway(store)
    runner, port = await _serve(gateway.application())
    runners.append(runner)
    try:
        yield store, gateway, servers, f"http://127.0.0.1:{port}"
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def _route(router: GatewayAPIRouter, challenger: int, mirror: int) -> dict[str, Any]:
    """The HTTPRoute as the operator's router edits it."""
    route: dict[str, Any] = {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "model", "namespace": "ns"},
        "spec": {"rules": [{"backendRefs": [{"name": "champion", "port": 80}]}]},
    }
    router.put_weights(route, SPLIT, challenger)
    router.put_mirror_all(route, SPLIT, mirror)
    return route


async def test_a_shadow_route_copies_every_request_to_the_challenger_and_answers_from_the_champion(
    plane: tuple[Store, Gateway, dict[str, Server], str],
) -> None:
    store, gateway, servers, url = plane
    store.create(store.type_for(GROUP, "httproutes"), "ns", _route(GatewayAPIRouter(None, "ns", "model"), 0, 100))  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as client:
        for number in range(40):
            async with client.post(f"{url}/predict", data=f"request {number}".encode()) as response:
                assert (await response.json())["version"] == "1.0.0"  # the client only ever sees the champion
    await gateway.copies_sent()
    assert sorted(servers["challenger"].bodies) == sorted(servers["champion"].bodies)  # the same requests
    assert all(host.endswith("-shadow") for host in servers["challenger"].hosts)


async def test_a_mirror_percent_copies_about_that_share(plane: tuple[Store, Gateway, dict[str, Server], str]) -> None:
    store, gateway, servers, url = plane
    store.create(store.type_for(GROUP, "httproutes"), "ns", _route(GatewayAPIRouter(None, "ns", "model"), 0, 25))  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as client:
        for _ in range(400):
            async with client.get(f"{url}/predict") as response:
                await response.read()
    await gateway.copies_sent()
    assert 60 <= len(servers["challenger"].bodies) <= 140  # 100 expected; binomial sd 8.7


async def test_sticky_cookies_keep_each_client_on_one_version(
    plane: tuple[Store, Gateway, dict[str, Server], str],
) -> None:
    store, _, _, url = plane
    router = GatewayAPIRouter(None, "ns", "model", Stickiness(cookie="relearn-arm", max_age="1h"))  # type: ignore[arg-type]
    store.create(store.type_for(GROUP, "httproutes"), "ns", _route(router, 50, 0))
    stays = []
    first = collections.Counter[str]()
    for _ in range(30):
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            seen = []
            for _ in range(20):
                async with client.get(f"{url}/predict") as response:
                    seen.append((await response.json())["version"])
            first[seen[0]] += 1
            stays.append(seen.count(seen[0]) / len(seen))
    assert sum(stays) / len(stays) >= 0.99
    assert set(first) == {"1.0.0", "1.1.0"}  # both arms got clients (a 50/50 split)
