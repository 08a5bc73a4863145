"""The whole sandbox: API server, kubelet, gateway and Prometheus on
127.0.0.1, and a kubeconfig that points kubectl, the ``kubernetes`` client
and the operator at it.

:class:`Sandbox` runs on the caller's event loop (``relearn sandbox up``);
:class:`SandboxThread` runs one in a background thread, for tests and the
demo, which then talk to it over HTTP like any client.

The operator gets a kubeconfig of its own (``kubeconfig-operator``, the
identity ``operator``), so the API server's call log tells its calls from
the tests' and kubectl's and RBAC rules can be enforced on it alone
(:mod:`.audit`). Faults for the chaos bench and tests: the API server
restarted (connections refused for a while, then the same state on the same
port), status writes failing for a while, and a pod's processes killed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import secrets
import ssl
import sys
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from aiohttp import web

from relearn_sandbox.apiserver import ApiServer
from relearn_sandbox.audit import OPERATOR, ApiCall, Audit, Grant
from relearn_sandbox.gateway import Gateway
from relearn_sandbox.kubelet import Kubelet
from relearn_sandbox.prometheus import Prometheus
from relearn_sandbox.store import Store
from relearn_sandbox.tls import ServingCertificate, make_serving_certificate

T = TypeVar("T")
TRAINER_IMAGE = "ghcr.io/relearn-dev/relearn-trainer"
OPERATOR_IMAGE = "ghcr.io/relearn-dev/relearn-operator"


def default_images() -> dict[str, list[str]]:
    """Relearn's own images run from this Python: their entrypoints, locally."""
    return {
        TRAINER_IMAGE: [sys.executable, "-m", "relearn_trainer"],
        OPERATOR_IMAGE: [sys.executable, "-m", "relearn"],
    }


@dataclass
class SandboxConfig:
    workdir: Path
    api_port: int = 0
    gateway_port: int = 0
    # Seconds the gateway learns of route and endpoint changes late (a real proxy's propagation delay).
    gateway_lag: float = 0.0
    prometheus: bool = True
    prometheus_port: int = 0
    scrape_interval: str = "1s"
    # HTTPS with a generated CA, and a bearer token required of clients
    # (client-go sends tokens only over TLS, so the two go together).
    secure: bool = False
    images: dict[str, list[str]] = field(default_factory=default_images)
    bookmark_interval: float = 5.0
    job_backoff: float = 1.0
    # Changes kept for watches to resume from; older versions get 410 Gone.
    history: int = 20_000

    def __post_init__(self) -> None:
        # Pods run in folders of their own: every path handed to them must not depend on this process's cwd.
        self.workdir = Path(self.workdir).resolve()


class Sandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.store: Store | None = None
        self.kubelet: Kubelet | None = None
        self.prometheus: Prometheus | None = None
        self.api_url = ""
        self.gateway_url = ""
        self.gateway: Gateway | None = None  # the data plane, for tests that break it (a router ignoring weights)
        self.token: str | None = None
        self.operator_token = secrets.token_urlsafe(24)
        self.certificate: ServingCertificate | None = None
        self.audit = Audit()
        self.api: ApiServer | None = None
        self._api_runner: web.AppRunner | None = None
        self._api_port = 0
        self._ssl_context: ssl.SSLContext | None = None
        self._runners: list[web.AppRunner] = []

    @property
    def kubeconfig(self) -> Path:
        return self.config.workdir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        """The kubeconfig to run the operator with: its calls are logged as ``operator``."""
        return self.config.workdir / "kubeconfig-operator"

    @property
    def prometheus_url(self) -> str | None:
        return self.prometheus.url if self.prometheus else None

    async def start(self) -> None:
        workdir = self.config.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.store = Store(history=self.config.history)
        if self.config.prometheus:
            self.prometheus = Prometheus(
                workdir / "prometheus", port=self.config.prometheus_port, scrape_interval=self.config.scrape_interval
            )
            await self.prometheus.start()
        self.kubelet = Kubelet(
            self.store,
            workdir / "kubelet",
            images=self.config.images,
            on_pods_changed=self.prometheus.update_targets if self.prometheus else None,
            job_backoff=self.config.job_backoff,
        )
        self.kubelet.start()
        if self.config.secure:
            self.token = secrets.token_urlsafe(24)
            self.certificate = make_serving_certificate(workdir / "pki")
            self._ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl_context.load_cert_chain(self.certificate.cert_file, self.certificate.key_file)
        self._api_port = self.config.api_port
        await self.start_api()
        self.gateway = Gateway(self.store, lag=self.config.gateway_lag)
        self.gateway_url = await self._serve(self.gateway.application(), self.config.gateway_port)
        self.write_kubeconfig()

    async def start_api(self) -> None:
        """Serve the API (again, after :meth:`stop_api`: the same store, port and identities)."""
        assert self.store is not None
        assert self.kubelet is not None
        if self._api_runner is not None:
            return
        faults = self.api.failing_status_writes if self.api is not None else None
        self.api = ApiServer(
            self.store,
            token=self.token,
            identities={self.operator_token: OPERATOR},
            audit=self.audit,
            log_source=self.kubelet.logs,
            bookmark_interval=self.config.bookmark_interval,
        )
        self.api.failing_status_writes = faults
        self._api_runner = await self._runner(self.api.application(), self._api_port, self._ssl_context)
        self._api_port = self._api_runner.addresses[0][1]
        self.api_url = self._url(self._api_runner, self._ssl_context)

    async def stop_api(self) -> None:
        """Stop serving the API: open connections and watches end, new ones are
        refused, until :meth:`start_api`. The store, kubelet and gateway run on."""
        if self._api_runner is not None:
            runner, self._api_runner = self._api_runner, None
            await runner.cleanup()

    async def restart_api(self, down: float = 5.0) -> None:
        """An API server restart: down (connections refused) for ``down`` seconds, then the same state."""
        await self.stop_api()
        await asyncio.sleep(down)
        await self.start_api()

    def fail_status_writes(self, seconds: float, code: int = 503) -> None:
        """Status writes (PUT/PATCH of ``*/status``) answer ``code`` for ``seconds``."""
        assert self.api is not None
        self.api.fail_status_writes(seconds, code)

    def kill_pod(self, namespace: str, name: str) -> bool:
        """SIGKILL a pod's processes, as an out-of-memory kill or a lost node
        would (no grace, no SIGTERM); False when it runs none. Any thread."""
        assert self.kubelet is not None
        return self.kubelet.kill(namespace, name)

    def enforce_rbac(self, user: str, grants: list[Grant] | None) -> None:
        """Hold ``user`` (e.g. ``operator``) to these RBAC grants: 403 for anything else; None lifts it."""
        self.audit.enforce(user, grants)

    def api_calls(self, user: str = OPERATOR) -> list[ApiCall]:
        """The resource requests ``user`` made so far (the oldest first)."""
        return self.audit.of(user)

    async def _runner(self, app: web.Application, port: int, ssl_context: ssl.SSLContext | None) -> web.AppRunner:
        runner = web.AppRunner(app, shutdown_timeout=1.0, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        return runner

    @staticmethod
    def _url(runner: web.AppRunner, ssl_context: ssl.SSLContext | None) -> str:
        host, bound_port = runner.addresses[0][:2]
        return f"{'https' if ssl_context else 'http'}://{host}:{bound_port}"

    async def _serve(self, app: web.Application, port: int, ssl_context: ssl.SSLContext | None = None) -> str:
        runner = await self._runner(app, port, ssl_context)
        self._runners.append(runner)
        return self._url(runner, ssl_context)

    def write_kubeconfig(self) -> Path:
        """The admin's kubeconfig and the operator's (the same cluster, another token)."""
        config = self._kubeconfig({"token": self.token} if self.token else {})
        self.kubeconfig.write_text(yaml.safe_dump(config, sort_keys=False))
        self.kubeconfig.chmod(0o600)
        operator = copy.deepcopy(config)
        operator["users"][0]["user"] = {"token": self.operator_token}
        self.operator_kubeconfig.write_text(yaml.safe_dump(operator, sort_keys=False))
        self.operator_kubeconfig.chmod(0o600)
        return self.kubeconfig

    def _kubeconfig(self, user: dict[str, Any]) -> dict[str, Any]:
        cluster: dict[str, Any] = {"server": self.api_url}
        if self.certificate is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.certificate.ca_file.read_bytes()).decode()
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "relearn-sandbox", "cluster": cluster}],
            "users": [{"name": "relearn-sandbox", "user": user}],
            "contexts": [
                {
                    "name": "relearn-sandbox",
                    "context": {"cluster": "relearn-sandbox", "user": "relearn-sandbox", "namespace": "default"},
                }
            ],
            "current-context": "relearn-sandbox",
        }

    async def stop(self) -> None:
        await self.stop_api()
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        if self.kubelet:
            await self.kubelet.stop()
        if self.prometheus:
            await self.prometheus.stop()


class SandboxThread:
    """A :class:`Sandbox` on its own event loop in a daemon thread."""

    def __init__(self, config: SandboxConfig) -> None:
        self.sandbox = Sandbox(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="relearn-sandbox", daemon=True)

    def start(self, timeout: float = 60.0) -> Sandbox:
        self._thread.start()
        future: Future[None] = asyncio.run_coroutine_threadsafe(self.sandbox.start(), self._loop)
        try:
            future.result(timeout)
        except BaseException:
            self.stop()
            raise
        return self.sandbox

    async def _shutdown(self) -> None:
        await self.sandbox.stop()
        leftovers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in leftovers:
            task.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Await ``coroutine`` on the sandbox's loop (for tests that stop and
        start its parts, e.g. Prometheus)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def restart_api(self, down: float = 5.0) -> None:
        """Restart the API server (refusing connections for ``down`` seconds); returns once it serves again."""
        self.run(self.sandbox.restart_api(down), timeout=down + 30)

    def fail_status_writes(self, seconds: float, code: int = 503) -> None:
        """Status writes answer ``code`` for the next ``seconds``."""
        self._loop.call_soon_threadsafe(self.sandbox.fail_status_writes, seconds, code)

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
        if not self._loop.is_running():
            self._loop.close()
