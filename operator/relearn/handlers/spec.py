"""Spec checks for every Relearn kind on create, update and resume.

Invalid specs get ``Ready=False, reason=InvalidSpec`` naming the field, and a
Warning Event; the handler returns normally so kopf does not retry an input
error and the operator keeps serving every other object. The decision itself
is ``relearn.core.spec_check.check_spec``.

Status is written by read-modify-write on the freshest object (with its
resourceVersion as precondition), like every other status writer here, so
the Ready condition never overwrites the conditions a daemon set meanwhile.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Any

import kopf

from relearn.adapters.kube import KubeClient
from relearn.api import GROUP, KINDS, VERSION, Kind
from relearn.core.spec_check import SpecCheck, check_spec
from relearn.handlers.guard import API_RETRY
from relearn.handlers.lookups import Lookup
from relearn.metrics import HANDLER_SECONDS, SPEC_CHECKS


def make_spec_handler(kind: Kind) -> Any:
    async def check(
        *, body: kopf.Body, name: str, namespace: str | None, memo: Any, logger: kopf.Logger, **kwargs: Any
    ) -> None:
        kube: KubeClient = memo["kube"]
        now = datetime.datetime.now(datetime.UTC)
        checked: list[SpecCheck] = []
        versions: list[dict[str, Any]] = []
        if kind.kind == "ModelVersion" and not dict(body.status).get("phase"):
            # The model's versions from the index: a thousand new versions, not a thousand lists of them.
            versions = await Lookup.of(kube, kwargs).versions(namespace or "", str(body.spec.get("model", "")))

        def change(status: dict[str, Any]) -> dict[str, Any]:
            current = {"metadata": dict(body.metadata), "spec": dict(body.spec), "status": status}
            checked.append(check_spec(kind, current, now=now, versions=versions))
            return checked[-1].status_patch

        with HANDLER_SECONDS.labels(kind.kind, "spec").time():
            await kube.update_status(kind.plural, namespace or "", name, change)
            result = checked[-1]
            if result.event is not None:
                await kube.post_event(body, result.event.type, result.event.reason, result.event.message)
            SPEC_CHECKS.labels(kind.kind, "valid" if result.valid else "invalid").inc()
            if result.valid:
                logger.info("spec accepted", extra={"generation": result.status_patch["observedGeneration"]})
            else:
                logger.warning("invalid spec: %s", "; ".join(result.errors))

    check.__name__ = f"check_{kind.plural}_spec"
    return check


def register(registry: kopf.OperatorRegistry, when: Callable[..., bool] | None = None) -> None:
    for kind in KINDS:
        handler = make_spec_handler(kind)
        for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
            # Retried within seconds when the API was unreachable (kopf's default waits a minute).
            on(GROUP, VERSION, kind.plural, registry=registry, id="spec", backoff=API_RETRY, when=when)(handler)
