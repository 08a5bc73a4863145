"""Gateway API router: the weights of an ``HTTPRoute``'s (v1) backendRefs.

A backendRef to a Service is ``{name, port, weight}`` (kind ``Service`` and
the core group by default; weight 1 when absent, as in the API). The
challenger's ref copies the champion's port.
"""

from __future__ import annotations

from typing import Any

from relearn.adapters.kube import HTTPROUTES
from relearn.adapters.routers.weighted import WeightedRouter


class GatewayAPIRouter(WeightedRouter):
    provider = "gateway-api"
    resource = HTTPROUTES
    kind = "HTTPRoute"
    default_weight = 1

    def destinations(self, obj: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return [rule.setdefault("backendRefs", []) for rule in obj.get("spec", {}).get("rules") or ()]

    def service_of(self, destination: dict[str, Any]) -> str | None:
        if destination.get("kind", "Service") != "Service" or destination.get("group"):
            return None
        if destination.get("namespace") not in (None, "", self.namespace):
            return None
        name = destination.get("name")
        return str(name) if name else None

    def for_service(self, model: dict[str, Any], service: str) -> dict[str, Any]:
        ref: dict[str, Any] = {"name": service, "weight": 0}
        if "port" in model:
            ref["port"] = model["port"]
        return ref
