"""Operator start-up: kopf settings in one place.

kopf keeps its handler progress and last-handled spec in annotations under
``relearn.dev`` (structural schemas would prune a ``status.kopf`` field), and
posts Events from Normal level up. The heap is trimmed every minute
(:mod:`relearn.allocator`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import kopf

from relearn import allocator
from relearn.adapters.kube import KubeClient
from relearn.core.consent import Allowlist

ANNOTATION_PREFIX = "relearn.dev"


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    # Serving named namespaces (relearn run -n NS ..., the chart's namespaced
    # install): nothing to discover, so kopf neither lists nor watches the
    # cluster's namespaces and CRDs, and that install needs no cluster-wide
    # right at all. Patterns (-n 'ml-*') and every namespace (-A) still scan.
    settings.scanning.disabled = exact_namespaces(os.environ.get("RELEARN_NAMESPACES", ""))
    # The handlers' own reads and status writes (in worker threads).
    memo["kube"] = KubeClient.from_environment()
    # Where ABExperiments without spec.prometheus read their arms (relearn run --prometheus-url).
    memo["prometheus_url"] = os.environ.get("RELEARN_PROMETHEUS_URL") or None
    # Where credentials may be sent (relearn run --allowed-prometheus-url/--allowed-webhook-host).
    memo["allowed"] = Allowlist(
        prometheus_urls=tuple(u for u in os.environ.get("RELEARN_ALLOWED_PROMETHEUS_URLS", "").split(",") if u),
        webhook_hosts=tuple(h for h in os.environ.get("RELEARN_ALLOWED_WEBHOOK_HOSTS", "").split(",") if h),
    )


def exact_namespaces(namespaces: str) -> bool:
    """Whether ``namespaces`` (comma-separated, as ``relearn run -n`` got them) are
    all plain names: no glob pattern, no negation, and not every namespace."""
    names = [n for n in namespaces.split(",") if n]
    return bool(names) and not any(set(n) & set("*?[]!") for n in names)


async def start_trimming(memo: kopf.Memo, **_: Any) -> None:
    memo["heap_trim"] = asyncio.create_task(allocator.keep_trimming(), name="relearn-heap-trim")


async def stop_trimming(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("heap_trim")
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.on.startup(registry=registry)(configure)
    kopf.on.startup(registry=registry, id="heap-trim")(start_trimming)
    kopf.on.cleanup(registry=registry, id="heap-trim")(stop_trimming)
