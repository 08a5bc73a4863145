"""What a real API server's registry strategies do to some built-in kinds on
every write, before the object is stored: :class:`.store.Store` calls
:func:`prepare` on create and on update (PUT, patch, status writes).

- Secret: ``stringData`` is merged into the base64 ``data`` and dropped, so a
  hand-written Secret has the values a pod reads.
- Job: unless ``spec.manualSelector``, ``spec.selector`` selects the Job's
  ``controller-uid`` and the pod template carries the matching labels, so
  ``kubectl logs job/NAME`` and ``kubectl describe job`` find that Job's pods.
"""

from __future__ import annotations

import base64
from typing import Any

from relearn_sandbox.resources import ResourceType

CONTROLLER_UID = "batch.kubernetes.io/controller-uid"
JOB_NAME = "batch.kubernetes.io/job-name"


def prepare(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Complete ``obj`` (which has its ``uid`` already) as the kind's strategy does."""
    if rt.is_custom:
        return
    if (rt.group, rt.plural) == ("", "secrets"):
        _merge_string_data(obj)
    elif (rt.group, rt.plural) == ("batch", "jobs"):
        _select_own_pods(obj)


def _merge_string_data(secret: dict[str, Any]) -> None:
    string_data = secret.pop("stringData", None)
    if not string_data:
        return
    encoded = {key: base64.b64encode(str(value).encode()).decode() for key, value in string_data.items()}
    secret["data"] = {**(secret.get("data") or {}), **encoded}


def _select_own_pods(job: dict[str, Any]) -> None:
    spec = job.setdefault("spec", {})
    if spec.get("manualSelector"):
        return
    meta = job["metadata"]
    uid, name = meta["uid"], meta["name"]
    spec["selector"] = {"matchLabels": {CONTROLLER_UID: uid}}
    template_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    template_meta["labels"] = {
        **(template_meta.get("labels") or {}),
        CONTROLLER_UID: uid,
        JOB_NAME: name,
        "controller-uid": uid,
        "job-name": name,
    }
