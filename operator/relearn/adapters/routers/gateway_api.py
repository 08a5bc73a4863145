"""Gateway API router: the weights of an ``HTTPRoute``'s (v1) backendRefs.

A backendRef to a Service is ``{name, port, weight}`` (kind ``Service`` and
the core group by default; weight 1 when absent, as in the API). The
challenger's ref copies the champion's port.

A shadow stage is a rule filter ``RequestMirror`` to the challenger's
Service with ``percent`` (Gateway API v1.2; without it, 100). Stickiness is
Flagger's: each arm's backendRef marks its responses (a
``ResponseHeaderModifier`` filter adding ``Set-Cookie``, or setting the
header), and for each arm a rule with the same matches plus a header match on
the mark (``RegularExpression`` on ``Cookie``, or ``Exact`` on the header)
sends marked requests to that arm alone; more header matches take
precedence in the API, so a marked request never reaches the weighted rule.
"""

from __future__ import annotations

import copy
from typing import Any

from relearn.adapters.kube import HTTPROUTES
from relearn.adapters.routers.weighted import WeightedRouter

MIRROR = "RequestMirror"
MARK = "ResponseHeaderModifier"


class GatewayAPIRouter(WeightedRouter):
    provider = "gateway-api"
    resource = HTTPROUTES
    kind = "HTTPRoute"
    default_weight = 1

    def rules(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        rules = (obj.get("spec") or {}).get("rules")
        return rules if isinstance(rules, list) else []

    def destinations_of(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        refs: list[dict[str, Any]] = rule.setdefault("backendRefs", [])
        return refs

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

    # -- mirroring ----------------------------------------------------------------

    def _mirrors_to(self, entry: dict[str, Any], service: str) -> bool:
        target = (entry.get("requestMirror") or {}).get("backendRef") or {}
        return entry.get("type") == MIRROR and self.service_of(target) == service

    def mirror_of(self, rule: dict[str, Any], service: str) -> int | None:
        for entry in rule.get("filters") or ():
            if self._mirrors_to(entry, service):
                mirror = entry["requestMirror"]
                if "percent" in mirror:
                    return int(mirror["percent"])
                fraction = mirror.get("fraction")
                if fraction:
                    return round(100 * int(fraction.get("numerator", 0)) / int(fraction.get("denominator", 100)))
                return 100
        return None

    def put_mirror(self, rule: dict[str, Any], model: dict[str, Any], service: str, percent: int) -> None:
        filters = [f for f in rule.get("filters") or () if not self._mirrors_to(f, service)]
        if percent > 0:
            target = {k: v for k, v in self.for_service(model, service).items() if k != "weight"}
            filters.append({"type": MIRROR, "requestMirror": {"backendRef": target, "percent": percent}})
        if filters:
            rule["filters"] = filters
        else:
            rule.pop("filters", None)

    # -- stickiness -----------------------------------------------------------------

    def _is_mark(self, entry: dict[str, Any]) -> bool:
        if entry.get("type") != MARK or self.stickiness is None:
            return False
        modifier = entry.get("responseHeaderModifier") or {}
        headers = [*(modifier.get("add") or ()), *(modifier.get("set") or ())]
        if self.stickiness.cookie is not None:
            prefix = f"{self.stickiness.cookie}="
            return any(
                str(h.get("name", "")).lower() == "set-cookie" and str(h.get("value", "")).startswith(prefix)
                for h in headers
            )
        return any(str(h.get("name", "")).lower() == str(self.stickiness.header).lower() for h in headers)

    def mark(self, destination: dict[str, Any], value: str | None) -> None:
        filters = [f for f in destination.get("filters") or () if not self._is_mark(f)]
        if value is not None and self.stickiness is not None:
            if self.stickiness.cookie is not None:
                modifier = {"add": [{"name": "Set-Cookie", "value": self.set_cookie(value)}]}
            else:
                modifier = {"set": [{"name": str(self.stickiness.header), "value": value}]}
            filters.append({"type": MARK, "responseHeaderModifier": modifier})
        if filters:
            destination["filters"] = filters
        else:
            destination.pop("filters", None)

    def _mark_match(self, value: str) -> dict[str, str]:
        assert self.stickiness is not None
        if self.stickiness.cookie is not None:
            return {"type": "RegularExpression", "name": "Cookie", "value": self.cookie_pattern(value)}
        return {"type": "Exact", "name": str(self.stickiness.header), "value": value}

    def _matches_mark(self, match: dict[str, Any]) -> bool:
        assert self.stickiness is not None
        for header in match.get("headers") or ():
            name = str(header.get("name", "")).lower()
            if self.stickiness.cookie is not None:
                if name == "cookie" and str(header.get("value", "")).startswith(self.cookie_prefix()):
                    return True
            elif name == str(self.stickiness.header).lower():
                return True
        return False

    def sticky_rule(self, rule: dict[str, Any], destination: dict[str, Any], value: str) -> dict[str, Any]:
        matches = rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]
        ref = copy.deepcopy(destination)
        ref["weight"] = 1
        sticky: dict[str, Any] = {
            "matches": [
                {**copy.deepcopy(m), "headers": [*(m.get("headers") or ()), self._mark_match(value)]} for m in matches
            ],
            "backendRefs": [ref],
        }
        filters = [copy.deepcopy(f) for f in rule.get("filters") or () if f.get("type") != MIRROR]
        if filters:
            sticky["filters"] = filters
        return sticky

    def is_sticky_rule(self, rule: dict[str, Any]) -> bool:
        if self.stickiness is None:
            return False
        matches = rule.get("matches") or ()
        return bool(matches) and all(self._matches_mark(m) for m in matches)
