"""Spec checks for every Relearn kind on create, update and resume.

Invalid specs get ``Ready=False, reason=InvalidSpec`` naming the field, and a
Warning Event; the handler returns normally so kopf does not retry an input
error and the operator keeps serving every other object. The decision itself
is ``relearn.core.spec_check.check_spec``.
"""

from __future__ import annotations

import datetime
from typing import Any

import kopf

from relearn.api import GROUP, KINDS, VERSION, Kind
from relearn.core.spec_check import check_spec
from relearn.metrics import HANDLER_SECONDS, SPEC_CHECKS


def make_spec_handler(kind: Kind) -> Any:
    async def check(body: kopf.Body, patch: kopf.Patch, logger: kopf.Logger, **_: Any) -> None:
        with HANDLER_SECONDS.labels(kind.kind, "spec").time():
            result = check_spec(kind, body, now=datetime.datetime.now(datetime.UTC))
            for key, value in result.status_patch.items():
                patch.status[key] = value
            if result.event is not None:
                # kopf.event queues the post; nothing blocks the event loop here.
                kopf.event(body, type=result.event.type, reason=result.event.reason, message=result.event.message)
            SPEC_CHECKS.labels(kind.kind, "valid" if result.valid else "invalid").inc()
            if result.valid:
                logger.info("spec accepted", extra={"generation": result.status_patch["observedGeneration"]})
            else:
                logger.warning("invalid spec: %s", "; ".join(result.errors))

    check.__name__ = f"check_{kind.plural}_spec"
    return check


def register(registry: kopf.OperatorRegistry) -> None:
    for kind in KINDS:
        handler = make_spec_handler(kind)
        for on in (kopf.on.create, kopf.on.update, kopf.on.resume):
            on(GROUP, VERSION, kind.plural, registry=registry, id="spec")(handler)
