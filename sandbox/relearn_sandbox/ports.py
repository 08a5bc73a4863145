"""Where a sandbox pod listens: every ``containerPort`` is a loopback port of
this machine, recorded in the pod's annotation ``sandbox.relearn.dev/ports``
(``{"<containerPort>": <host port>}``).

:mod:`.runtime` writes the annotation when it starts a pod; the Endpoints
controller (:mod:`.controllers.endpoints`), the API server's port-forward
answer, Prometheus' targets, and tests and benches (:func:`pod_url`) read it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PORTS_ANNOTATION = "sandbox.relearn.dev/ports"


def pod_url(annotations: Mapping[str, str] | None, container_port: int = 8080) -> str:
    """``http://127.0.0.1:<port>`` where the sandbox runs a pod's ``container_port``."""
    ports = json.loads((annotations or {}).get(PORTS_ANNOTATION, "{}"))
    if str(container_port) not in ports:
        raise LookupError(f"the pod has no container port {container_port} in the sandbox")
    return f"http://127.0.0.1:{ports[str(container_port)]}"


def container_port(spec: Mapping[str, Any], ports: Mapping[int, int], port: Any) -> int | None:
    """The host port behind a container port given by number or name."""
    if isinstance(port, str) and not port.isdigit():
        named = next((p for p in spec.get("ports") or () if p.get("name") == port), None)
        return ports.get(int(named["containerPort"])) if named else None
    return ports.get(int(port)) if port is not None else None


def pod_port(pod: Mapping[str, Any], target: Any) -> int | None:
    """The host port of a pod for a Service's targetPort (number or name)."""
    mapped = {
        int(k): v for k, v in json.loads(pod["metadata"].get("annotations", {}).get(PORTS_ANNOTATION, "{}")).items()
    }
    for spec in pod.get("spec", {}).get("containers") or ():
        port = container_port(spec, mapped, target)
        if port is not None:
            return port
    return None
