"""``Table`` output for ``kubectl get``: a CRD's printer columns, and the
usual columns of the built-in kinds.

Printer columns use Kubernetes' JSONPath dialect (``.status.phase``,
``.status.conditions[?(@.type=="Ready")].status``, ``.spec.items[0].name``).
Evaluated here by a small walker: the maintained Python JSONPath packages
speak other dialects (no ``[?(@.x=="y")]`` with Kubernetes' semantics).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from relearn_sandbox.resources import ResourceType

_STEP = re.compile(r"\.([\w-]+)|\[(\d+)\]|\[\*\]|\[\?\(@\.([\w.-]+)\s*==\s*[\"']([^\"']*)[\"']\)\]")


def json_path(obj: Any, path: str) -> list[Any]:
    """Every value a printer-column path selects (empty when absent)."""
    path = path.strip().removeprefix("{").removesuffix("}")
    nodes = [obj]
    position = 0
    while position < len(path):
        match = _STEP.match(path, position)
        if not match:
            raise ValueError(f"unsupported JSONPath {path!r} at {path[position:]!r}")
        field, index, filter_field, filter_value = match.groups()
        following: list[Any] = []
        for node in nodes:
            if field is not None and isinstance(node, Mapping) and field in node:
                following.append(node[field])
            elif index is not None and isinstance(node, list) and int(index) < len(node):
                following.append(node[int(index)])
            elif match.group(0) == "[*]" and isinstance(node, list):
                following.extend(node)
            elif filter_field is not None and isinstance(node, list):
                following.extend(
                    item
                    for item in node
                    if _dig(item, filter_field) is not None and str(_dig(item, filter_field)) == filter_value
                )
        nodes = following
        position = match.end()
    return nodes


def _dig(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def age(timestamp: str | None, now: datetime.datetime | None = None) -> str:
    """kubectl's short age: ``42s``, ``5m``, ``3h``, ``2d``."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= 60):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


Column = tuple[str, str, str, Any]  # name, type, description, cell function or JSONPath


def _ready_pods(o: Mapping[str, Any]) -> str:
    statuses = o.get("status", {}).get("containerStatuses") or []
    total = len(o.get("spec", {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(o: Mapping[str, Any]) -> str:
    if o.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    for status in o.get("status", {}).get("containerStatuses") or []:
        state = status.get("state", {})
        for key in ("waiting", "terminated"):
            if key in state and state[key].get("reason"):
                return str(state[key]["reason"])
    return str(o.get("status", {}).get("phase", "Pending"))


def _restarts(o: Mapping[str, Any]) -> int:
    return sum(s.get("restartCount", 0) for s in o.get("status", {}).get("containerStatuses") or [])


def _job_status(o: Mapping[str, Any]) -> str:
    for condition in o.get("status", {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in ("Complete", "Failed"):
            return str(condition["type"])
    return "Running" if o.get("status", {}).get("active") else "Pending"


def _ports(o: Mapping[str, Any]) -> str:
    ports = o.get("spec", {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _last_seen(o: Mapping[str, Any]) -> str | None:
    last = o.get("lastTimestamp") or o.get("eventTime") or o.get("metadata", {}).get("creationTimestamp")
    return str(last) if last else None


def _slice_ports(o: Mapping[str, Any]) -> str:
    return ",".join(str(p.get("port")) for p in o.get("ports") or ()) or "<unset>"


def _slice_endpoints(o: Mapping[str, Any]) -> str:
    return ",".join(a for e in o.get("endpoints") or () for a in e.get("addresses") or ()) or "<unset>"


def _endpoints(o: Mapping[str, Any]) -> str:
    pairs = [
        f"{a.get('ip')}:{p.get('port')}"
        for subset in o.get("subsets") or ()
        for a in subset.get("addresses") or ()
        for p in subset.get("ports") or ()
    ]
    return ",".join(pairs) or "<none>"


def _involved(o: Mapping[str, Any]) -> str:
    ref = o.get("involvedObject") or {}
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "Pod": [
        ("Ready", "string", "ready containers", _ready_pods),
        ("Status", "string", "pod status", _pod_status),
        ("Restarts", "integer", "container restarts", _restarts),
    ],
    "Deployment": [
        (
            "Ready",
            "string",
            "ready/desired",
            lambda o: f"{o.get('status', {}).get('readyReplicas', 0)}/{o.get('spec', {}).get('replicas', 1)}",
        ),
        ("Up-to-date", "integer", "updated replicas", lambda o: o.get("status", {}).get("updatedReplicas", 0)),
        ("Available", "integer", "available replicas", lambda o: o.get("status", {}).get("availableReplicas", 0)),
    ],
    "Job": [
        ("Status", "string", "job status", _job_status),
        (
            "Completions",
            "string",
            "succeeded/completions",
            lambda o: f"{o.get('status', {}).get('succeeded', 0)}/{o.get('spec', {}).get('completions', 1)}",
        ),
    ],
    "Service": [
        ("Type", "string", "service type", lambda o: o.get("spec", {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", "cluster IP", lambda o: o.get("spec", {}).get("clusterIP", "<none>")),
        ("Port(s)", "string", "ports", _ports),
    ],
    "EndpointSlice": [
        ("AddressType", "string", "address type", lambda o: o.get("addressType", "")),
        ("Ports", "string", "ports", _slice_ports),
        ("Endpoints", "string", "addresses", _slice_endpoints),
    ],
    "Endpoints": [("Endpoints", "string", "ready addresses and ports", _endpoints)],
    "Namespace": [("Status", "string", "phase", lambda o: o.get("status", {}).get("phase", ""))],
    "Event": [
        ("Last Seen", "string", "when the event last happened", lambda o: age(_last_seen(o))),
        ("Type", "string", "event type", lambda o: o.get("type", "")),
        ("Reason", "string", "reason", lambda o: o.get("reason", "")),
        ("Object", "string", "involved object", _involved),
        ("Message", "string", "message", lambda o: o.get("message", "")),
    ],
}


def _cell(obj: Mapping[str, Any], column: Mapping[str, Any]) -> Any:
    values = json_path(obj, column["jsonPath"])
    if not values:
        return None
    value = values[0] if len(values) == 1 else ",".join(map(str, values))
    if column.get("type") == "date" and isinstance(value, str):
        return age(value)
    return value


def columns_of(rt: ResourceType) -> list[dict[str, Any]]:
    name = {"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}
    if rt.is_custom:
        custom = [
            {
                "name": c["name"],
                "type": c["type"],
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in rt.printer_columns
        ]
        if not custom:
            custom = [{"name": "Age", "type": "date", "format": "", "description": "age", "priority": 0}]
        return [name, *custom]
    extra = [
        {"name": n, "type": t, "format": "", "description": d, "priority": 0}
        for n, t, d, _ in BUILTIN_COLUMNS.get(rt.kind, [])
    ]
    if rt.kind == "Event":  # as a real server prints events: LAST SEEN first, the name only with -o wide
        return [*extra, {**name, "priority": 1}]
    return [name, *extra, {"name": "Age", "type": "string", "format": "", "description": "age", "priority": 0}]


def row_of(rt: ResourceType, obj: Mapping[str, Any]) -> list[Any]:
    meta = obj.get("metadata", {})
    if rt.is_custom:
        cells = (
            [_cell(obj, c) for c in rt.printer_columns] if rt.printer_columns else [age(meta.get("creationTimestamp"))]
        )
        return [meta.get("name"), *cells]
    extra = [fn(obj) for _, _, _, fn in BUILTIN_COLUMNS.get(rt.kind, [])]
    if rt.kind == "Event":
        return [*extra, meta.get("name")]
    return [meta.get("name"), *extra, age(meta.get("creationTimestamp"))]


def _row_object(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "Object":
        return dict(obj)
    if include == "None":
        return None
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def table(
    rt: ResourceType,
    objects: Sequence[Mapping[str, Any]],
    resource_version: str | None,
    *,
    with_columns: bool = True,
    include: str = "Metadata",
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table. ``include`` is the request's ``includeObject``:
    kubectl asks for ``Object`` to ``--sort-by`` a field outside metadata, and
    sorts the rows by that field of each row's object."""
    rows = []
    for o in objects:
        row: dict[str, Any] = {"cells": row_of(rt, o)}
        row_object = _row_object(o, include)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    result: dict[str, Any] = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version or ""},
        "rows": rows,
    }
    if with_columns:
        result["columnDefinitions"] = columns_of(rt)
    return result
