"""A real Prometheus server for the sandbox (the Debian ``prometheus``
package, or any ``prometheus`` binary on PATH), scraping the sandbox's pods.

Targets come from file-based service discovery: the kubelet reports its pods
and this module writes every running pod annotated
``prometheus.io/scrape: "true"`` (port from ``prometheus.io/port``, path from
``prometheus.io/path``, default ``/metrics``) with the labels a Kubernetes
scrape config usually keeps: ``namespace``, ``pod`` and the pod's labels,
with ``.``, ``/`` and ``-`` turned into ``_`` (``relearn.dev/model`` ->
``relearn_dev_model``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from relearn_sandbox.ports import PORTS_ANNOTATION
from relearn_sandbox.processes import die_with_parent, free_port, terminate_group

INSTALL_HINT = (
    "Prometheus is not installed: run `apt-get install prometheus` (Debian/Ubuntu), or put a prometheus "
    "binary on PATH, or start the sandbox without Prometheus (--no-prometheus)."
)


class PrometheusNotInstalled(RuntimeError):
    pass


def label_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", key)


def scrape_targets(pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """File-SD target groups for the pods that ask to be scraped."""
    groups = []
    for pod in pods:
        meta = pod["metadata"]
        annotations = meta.get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true" or pod.get("status", {}).get("phase") != "Running":
            continue
        ports = json.loads(annotations.get(PORTS_ANNOTATION, "{}"))
        port = ports.get(str(annotations.get("prometheus.io/port", ""))) or next(iter(ports.values()), None)
        if port is None:
            continue
        labels = {label_name(k): str(v) for k, v in (meta.get("labels") or {}).items()}
        labels.update(
            namespace=meta["namespace"],
            pod=meta["name"],
            __metrics_path__=annotations.get("prometheus.io/path", "/metrics"),
        )
        groups.append({"targets": [f"127.0.0.1:{port}"], "labels": labels})
    return groups


OPERATOR_TARGETS = "operator-targets.json"
OPERATOR_DEFAULT_PORT = 9090  # `relearn run --metrics-port`'s default


def scrape_operator(workdir: Path, port: int) -> None:
    """Have the sandbox's Prometheus (state folder ``workdir``) scrape an
    operator's metrics on 127.0.0.1:``port``, replacing the previous target."""
    target = workdir / OPERATOR_TARGETS
    temporary = target.with_suffix(".tmp")
    temporary.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"job": "relearn-operator"}}]))
    os.replace(temporary, target)


class Prometheus:
    def __init__(self, workdir: Path, *, port: int = 0, scrape_interval: str = "1s", binary: str | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.scrape_interval = scrape_interval
        self.binary = binary or shutil.which("prometheus")
        self._process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    @property
    def operator_targets_file(self) -> Path:
        return self.workdir / OPERATOR_TARGETS

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": "sandbox-pods",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
                },
                {
                    # The operator's own metrics (drift scores, weights: what
                    # `relearn report` plots). Its `namespace` label names the
                    # object's namespace, so it is kept as the operator wrote it.
                    "job_name": "relearn-operator",
                    "honor_labels": True,
                    "file_sd_configs": [{"files": [str(self.operator_targets_file)], "refresh_interval": "1s"}],
                },
            ],
        }

    async def start(self, timeout: float = 30.0) -> None:
        if self.binary is None:
            raise PrometheusNotInstalled(INSTALL_HINT)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML writer needed for the config.
        (self.workdir / "prometheus.yml").write_text(json.dumps(self.config(), indent=2))
        if not self.targets_file.exists():  # a restart keeps the pods it scraped
            self.update_targets([])
        if not self.operator_targets_file.exists():  # `relearn run` started by hand: its default port
            scrape_operator(self.workdir, OPERATOR_DEFAULT_PORT)
        log = (self.workdir / "prometheus.log").open("ab")
        self._process = await asyncio.create_subprocess_exec(
            self.binary,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        log.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while loop.time() < deadline:
                if self._process.returncode is not None:
                    raise RuntimeError(
                        f"prometheus exited with {self._process.returncode}; see {self.workdir / 'prometheus.log'}"
                    )
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.url}/-/ready") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)
        raise TimeoutError(f"prometheus not ready after {timeout}s; see {self.workdir / 'prometheus.log'}")

    def update_targets(self, pods: Iterable[Mapping[str, Any]]) -> None:
        temporary = self.targets_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(scrape_targets(pods), indent=2))
        os.replace(temporary, self.targets_file)

    async def stop(self) -> None:
        if self._process is not None:
            await terminate_group(self._process, grace=10.0)
