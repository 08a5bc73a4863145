"""Istio router: the weights of a ``VirtualService``'s HTTP routes.

A route destination is ``{destination: {host, port?, subset?}, weight}``;
``host`` names the Service as ``svc``, ``svc.ns`` or
``svc.ns.svc.cluster.local``. The challenger's destination keeps the
champion's host form and port (subsets are not used: each arm is its own
Service). Istio reads a missing weight as 100 when a route has one
destination; that is its default here.

A shadow stage is the HTTP route's ``mirror`` (the challenger's host) with
``mirrorPercentage``. Stickiness uses matches, as Flagger's session affinity
does: each arm's destination adds the mark to its responses
(``headers.response``: ``set-cookie``, or the header), and an HTTP route per
arm, placed before the weighted one (Istio takes the first that matches),
sends requests carrying the mark (a ``regex`` on ``cookie``, or the header
``exact``) to that arm alone. (``consistentHash`` load balancing would not
do: it picks among one destination's endpoints, after the weighted choice.)
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

    def rules(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        http = (obj.get("spec") or {}).get("http")
        return http if isinstance(http, list) else []

    def destinations_of(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        route: list[dict[str, Any]] = rule.setdefault("route", [])
        return route

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

    # -- mirroring ----------------------------------------------------------------

    def mirror_of(self, rule: dict[str, Any], service: str) -> int | None:
        mirror = rule.get("mirror")
        if not mirror or self.service_of({"destination": mirror}) != service:
            return None
        return round(float((rule.get("mirrorPercentage") or {}).get("value", 100)))

    def put_mirror(self, rule: dict[str, Any], model: dict[str, Any], service: str, percent: int) -> None:
        if self.mirror_of(rule, service) is not None:
            rule.pop("mirror", None)
            rule.pop("mirrorPercentage", None)
        if percent > 0:
            rule["mirror"] = self.for_service(model, service)["destination"]
            rule["mirrorPercentage"] = {"value": float(percent)}

    # -- stickiness -----------------------------------------------------------------

    def _mark_key(self) -> str:
        assert self.stickiness is not None
        return "set-cookie" if self.stickiness.cookie is not None else str(self.stickiness.header).lower()

    def mark(self, destination: dict[str, Any], value: str | None) -> None:
        if self.stickiness is None:
            return
        headers = destination.setdefault("headers", {})
        response = headers.setdefault("response", {})
        for part in ("add", "set"):
            if isinstance(response.get(part), dict):
                response[part].pop(self._mark_key(), None)
                if not response[part]:
                    response.pop(part)
        if value is not None:
            part = "add" if self.stickiness.cookie is not None else "set"
            response.setdefault(part, {})[self._mark_key()] = (
                self.set_cookie(value) if self.stickiness.cookie is not None else value
            )
        if not response:
            headers.pop("response")
        if not headers:
            destination.pop("headers")

    def _mark_match(self, value: str) -> tuple[str, dict[str, str]]:
        assert self.stickiness is not None
        if self.stickiness.cookie is not None:
            return "cookie", {"regex": self.cookie_pattern(value)}
        return str(self.stickiness.header).lower(), {"exact": value}

    def _matches_mark(self, match: dict[str, Any]) -> bool:
        assert self.stickiness is not None
        headers = match.get("headers") or {}
        if self.stickiness.cookie is not None:
            return str((headers.get("cookie") or {}).get("regex", "")).startswith(self.cookie_prefix())
        return str(self.stickiness.header).lower() in headers

    def sticky_rule(self, rule: dict[str, Any], destination: dict[str, Any], value: str) -> dict[str, Any]:
        sticky = {
            k: copy.deepcopy(v)
            for k, v in rule.items()
            if k not in ("match", "route", "mirror", "mirrorPercentage", "name")
        }
        key, condition = self._mark_match(value)
        sticky["match"] = [
            {**copy.deepcopy(m), "headers": {**(m.get("headers") or {}), key: condition}}
            for m in rule.get("match") or [{}]
        ]
        target = copy.deepcopy(destination)
        target["weight"] = 100
        sticky["route"] = [target]
        return sticky

    def is_sticky_rule(self, rule: dict[str, Any]) -> bool:
        if self.stickiness is None:
            return False
        matches = rule.get("match") or ()
        return bool(matches) and all(self._matches_mark(m) for m in matches)
