"""The challenger's workload, as manifests: a copy of the champion's
Deployment running the challenger's version, and (for routers that route to
Services) a Service in front of it. Pure, so what the operator creates is
checked without a cluster.

The copy keeps everything of the champion's Deployment (image, resources,
probes, volumes, security context) and changes only what makes it the
challenger:

- name ``<workload>-<version>`` (dots as dashes), owned by the experiment so
  it goes when the experiment is deleted, unless promotion disowned it;
- labels ``relearn.dev/model``, ``relearn.dev/version`` (and
  ``relearn.dev/experiment``) on the Deployment and its pods, and
  ``relearn.dev/version`` in the selector, so the two Deployments never
  select each other's pods (values through :func:`relearn.core.labels.label_value`,
  full values in annotations of the same keys when they differ);
- in the serving container (the one that sets ``versionEnv``, else the
  first): ``versionEnv`` = the challenger's version and, when its
  ModelVersion has an adapter, ``RELEARN_ADAPTER_URI`` and
  ``RELEARN_ADAPTER_SHA256`` (the reference model server's configuration).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from relearn.core.labels import label_value, labelled

MODEL_LABEL, VERSION_LABEL, EXPERIMENT_LABEL = "relearn.dev/model", "relearn.dev/version", "relearn.dev/experiment"
ADAPTER_ENV = ("RELEARN_ADAPTER_URI", "RELEARN_ADAPTER_SHA256")
# Server-set fields of a Deployment that must not travel into the copy.
_SERVER_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink")


def unverifiable(version: Mapping[str, Any]) -> str | None:
    """Why a ModelVersion may not take traffic as a challenger (so may never be
    promoted), or None: it needs an adapter and the sha256 the server checks it
    against. Without one its copy of the champion's Deployment would serve the
    champion's adapter, or an unchecked one, under the challenger's name."""
    spec = version.get("spec") or {}
    adapter = spec.get("adapter") or {}
    digest = adapter.get("sha256")
    if not adapter.get("uri"):
        return f"ModelVersion {spec.get('version')} has no adapter (spec.adapter.uri): nothing of its own to serve"
    if not isinstance(digest, str) or not re.fullmatch(r"[a-f0-9]{64}", digest):
        return (
            f"ModelVersion {spec.get('version')} has no valid spec.adapter.sha256: "
            "its adapter cannot be verified where it is served"
        )
    return None


def workload_name(workload: str, version: str) -> str:
    """``documents`` + ``1.1.0`` -> ``documents-1-1-0`` (a valid DNS-1035 label, at most 63)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", version.lower()).strip("-")
    return f"{workload[: 62 - len(slug)]}-{slug}".strip("-")[:63]


def owner_reference(experiment: Mapping[str, Any]) -> dict[str, Any]:
    meta = experiment["metadata"]
    return {
        "apiVersion": experiment.get("apiVersion", "relearn.dev/v1alpha1"),
        "kind": "ABExperiment",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _fresh_metadata(
    source: Mapping[str, Any], name: str, labels: Mapping[str, str], owner: dict[str, Any]
) -> dict[str, Any]:
    meta = copy.deepcopy(dict(source.get("metadata") or {}))
    for key in _SERVER_METADATA:
        meta.pop(key, None)
    annotations = {
        k: v
        for k, v in (meta.get("annotations") or {}).items()
        if not k.startswith(("deployment.kubernetes.io/", "kubectl.kubernetes.io/", "relearn.dev/"))
    }
    meta.update(name=name, labels={**(meta.get("labels") or {}), **labels}, ownerReferences=[owner])
    meta["annotations"] = annotations
    if not annotations:
        meta.pop("annotations")
    return meta


def serving_container(pod_spec: Mapping[str, Any], version_env: str) -> dict[str, Any]:
    containers = pod_spec.get("containers") or []
    if not containers:
        raise ValueError("the workload's pod template has no containers")
    for container in containers:
        if any(item.get("name") == version_env for item in container.get("env") or ()):
            return dict(container)
    return dict(containers[0])


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for item in env:
        if item.get("name") == name:
            item.clear()
            item.update(name=name, value=value)
            return
    env.append({"name": name, "value": value})


def challenger_deployment(
    champion: Mapping[str, Any],
    *,
    name: str,
    model: str,
    version: str,
    version_env: str,
    adapter: Mapping[str, str] | None,
    experiment: Mapping[str, Any],
    replicas: int,
) -> dict[str, Any]:
    labels, full = labelled(
        {MODEL_LABEL: model, VERSION_LABEL: version, EXPERIMENT_LABEL: experiment["metadata"]["name"]}
    )
    spec = copy.deepcopy(dict(champion["spec"]))
    spec["replicas"] = replicas
    spec["selector"] = {
        **spec.get("selector", {}),
        "matchLabels": {**(spec.get("selector") or {}).get("matchLabels", {}), VERSION_LABEL: labels[VERSION_LABEL]},
    }
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **labels}
    if full:
        template_meta["annotations"] = {**(template_meta.get("annotations") or {}), **full}
    pod_spec = template.setdefault("spec", {})
    container = serving_container(pod_spec, version_env)
    for item in pod_spec["containers"]:
        if item.get("name") == container.get("name"):
            _set_env(item, version_env, version)
            if adapter:
                _set_env(item, ADAPTER_ENV[0], adapter["uri"])
                _set_env(item, ADAPTER_ENV[1], adapter["sha256"])
    meta = _fresh_metadata(champion, name, labels, owner_reference(experiment))
    if full:
        meta["annotations"] = {**(meta.get("annotations") or {}), **full}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def challenger_service(
    champion: Mapping[str, Any], *, name: str, version: str, experiment: Mapping[str, Any]
) -> dict[str, Any]:
    """A ClusterIP Service like the champion's, selecting the challenger's pods."""
    source = champion.get("spec") or {}
    ports = [{k: v for k, v in port.items() if k != "nodePort"} for port in source.get("ports") or ()]
    labels, full = labelled({VERSION_LABEL: version, EXPERIMENT_LABEL: experiment["metadata"]["name"]})
    meta = _fresh_metadata(champion, name, labels, owner_reference(experiment))
    if full:
        meta["annotations"] = {**(meta.get("annotations") or {}), **full}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": {**(source.get("selector") or {}), VERSION_LABEL: labels[VERSION_LABEL]}, "ports": ports},
    }


def version_label(version: str) -> str:
    """The ``relearn.dev/version`` label value of a version (what pods of it carry)."""
    return label_value(version)


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str]) -> bool:
    """A Service selector that picks pods with ``labels`` (an empty selector picks none)."""
    return bool(selector) and all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    return dict((((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {})


def ready(deployment: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Is the Deployment's current template fully rolled out and ready, and in words."""
    if deployment is None:
        return False, "Deployment not created yet"
    wanted = int((deployment.get("spec") or {}).get("replicas", 1))
    status = deployment.get("status") or {}
    observed = status.get("observedGeneration", 0) >= deployment["metadata"].get("generation", 1)
    updated, available = int(status.get("updatedReplicas") or 0), int(status.get("availableReplicas") or 0)
    ok = observed and wanted > 0 and updated >= wanted and available >= wanted
    return ok, f"{available} of {wanted} replicas available"
