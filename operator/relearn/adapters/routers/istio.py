"""Istio router: the weights of a ``VirtualService``'s HTTP routes.

A route destination is ``{destination: {host, port?, subset?}, weight}``;
``host`` names the Service as ``svc``, ``svc.ns`` or
``svc.ns.svc.cluster.local``. The challenger's destination keeps the
champion's host form and port (subsets are not used: each arm is its own
Service). Istio reads a missing weight as 100 when a route has one
destination; that is its default here.
"""

from __future__ import annotations

import copy
from typing import Any

from relearn.adapters.kube import VIRTUALSERVICES
from relearn.adapters.routers.weighted import WeightedRouter


class IstioRouter(WeightedRouter):
    provider = "istio"
    resource = VIRTUALSERVICES
    kind = "VirtualService"
    default_weight = 100

    def destinations(self, obj: dict[str, Any]) -> list[list[dict[str, Any]]]:
        return [http.setdefault("route", []) for http in obj.get("spec", {}).get("http") or ()]

    def service_of(self, destination: dict[str, Any]) -> str | None:
        parts = str((destination.get("destination") or {}).get("host", "")).split(".")
        if not parts[0] or (len(parts) > 1 and parts[1] != self.namespace):
            return None
        return parts[0]

    def for_service(self, model: dict[str, Any], service: str) -> dict[str, Any]:
        target = copy.deepcopy(model.get("destination") or {})
        target.pop("subset", None)
        host = str(target.get("host", ""))
        target["host"] = ".".join([service, *host.split(".")[1:]])
        return {"destination": target, "weight": 0}
