"""A container's environment, as the kubelet builds it from the pod spec.

``env`` values with ``$(VAR)`` expanded (:func:`expand`, which
:mod:`.runtime` applies to ``command``/``args`` too), ``fieldRef``,
``configMapKeyRef`` and ``secretKeyRef`` resolved through the store; each
container port's loopback port as ``RELEARN_SANDBOX_PORT_<containerPort>``
(and ``PORT`` for the first); ``RELEARN_TERMINATION_MESSAGE_PATH`` and
``RELEARN_BIND=127.0.0.1``. In a pod of a subdomain (a headless Service) a
value naming a peer (``<host>.<subdomain>``, with or without
``.<namespace>.svc``) is 127.0.0.1, and one that is a declared port number
is its shared loopback port, as a cluster's DNS would give them addresses
(so ``MASTER_ADDR``/``MASTER_PORT`` of a torchrun rendezvous reach worker 0).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relearn_sandbox.store import Store

TERMINATION_ENV = "RELEARN_TERMINATION_MESSAGE_PATH"
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "VIRTUAL_ENV", "PYTHONPATH", "TMPDIR", "SSL_CERT_FILE")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion; ``$$(VAR)`` stays literal."""
    return re.sub(
        r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
        lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
        text,
    )


def environment(
    store: Store, pod: Mapping[str, Any], spec: Mapping[str, Any], ports: Mapping[int, int], termination_path: Path
) -> dict[str, str]:
    """The environment of a pod's container (``spec``) whose container ports are the host ``ports``."""
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["HOSTNAME"] = pod["spec"].get("hostname") or pod["metadata"]["name"]
    for declared, host_port in ports.items():
        env[f"RELEARN_SANDBOX_PORT_{declared}"] = str(host_port)
    if ports:
        env["PORT"] = str(next(iter(ports.values())))
    for item in spec.get("env") or ():
        value = item.get("value")
        source = item.get("valueFrom") or {}
        if "fieldRef" in source:
            path = source["fieldRef"].get("fieldPath", "")
            keyed = re.fullmatch(r"metadata\.(annotations|labels)\['([^']+)'\]", path)
            value = {
                "metadata.name": pod["metadata"]["name"],
                "metadata.namespace": pod["metadata"]["namespace"],
                "metadata.uid": pod["metadata"]["uid"],
                "status.podIP": "127.0.0.1",
                "spec.nodeName": "sandbox",
            }.get(path, "")
            if keyed is not None:
                value = (pod["metadata"].get(keyed.group(1)) or {}).get(keyed.group(2), "")
        for ref_key, plural in (("configMapKeyRef", "configmaps"), ("secretKeyRef", "secrets")):
            if ref_key in source:
                ref = source[ref_key]
                obj = store.try_get("", plural, pod["metadata"]["namespace"], ref.get("name", "")) or {}
                data = obj.get("data") or {}
                value = data.get(ref.get("key", ""), "")
                if plural == "secrets" and value:
                    value = base64.b64decode(value).decode()
        env[item["name"]] = _on_loopback(pod, ports, expand(str(value or ""), env))
    # Set last: the pod's terminationMessagePath is this file here, whatever
    # the spec says, and servers that honour RELEARN_BIND stay on loopback.
    env[TERMINATION_ENV] = str(termination_path)
    env["RELEARN_BIND"] = "127.0.0.1"
    return env


def _on_loopback(pod: Mapping[str, Any], ports: Mapping[int, int], value: str) -> str:
    """In a pod of a subdomain: a peer's DNS name is 127.0.0.1, a declared port its shared loopback port."""
    subdomain = pod["spec"].get("subdomain")
    if not subdomain:
        return value
    namespace = re.escape(pod["metadata"]["namespace"])
    peer = rf"[a-z0-9]([-a-z0-9]*[a-z0-9])?\.{re.escape(subdomain)}(\.{namespace}(\.svc(\.cluster\.local)?)?)?"
    match = re.fullmatch(rf"{peer}(:(?P<port>\d+))?", value)
    if match is not None:
        port = match.group("port")
        return "127.0.0.1" + (f":{ports.get(int(port), port)}" if port else "")
    if value.isdecimal() and int(value) in ports:
        return str(ports[int(value)])
    return value
