"""The resource types the sandbox API server serves: built-in kinds, and the
ones CustomResourceDefinitions add at run time. Discovery, routing, Table
output and admission all read from one :class:`ResourceType` per resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    # A CRD's openAPIV3Schema and printer columns; None for built-ins.
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    extra_subresources: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``jobs.batch``, ``pods``: how error messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def is_custom(self) -> bool:
        return self.schema is not None

    def discovery_entries(self) -> list[dict[str, Any]]:
        """This resource and its subresources as APIResource entries."""
        main: dict[str, Any] = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        entries = [main]
        subresources = (("status",) if self.has_status else ()) + self.extra_subresources
        for sub in subresources:
            entry: dict[str, Any] = {
                "name": f"{self.plural}/{sub}",
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }
            if sub == "log":
                entry.update(kind="Pod", verbs=["get"])
            elif sub == "portforward":
                entry.update(kind="PodPortForwardOptions", verbs=["create", "get"])
            elif sub == "scale":
                # kubectl's scale client reads the Scale kind's group and version from here.
                entry.update(kind="Scale", group="autoscaling", version="v1")
            entries.append(entry)
        return entries


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: Iterable[str] = (),
    categories: Iterable[str] = ("all",),
    status: bool = True,
    extra: Iterable[str] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=tuple(short),
        categories=tuple(categories),
        has_status=status,
        extra_subresources=tuple(extra),
    )


BUILTINS: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"], categories=()),
    _builtin("", "v1", "pods", "Pod", short=["po"], extra=["log", "portforward"]),
    _builtin("", "v1", "services", "Service", short=["svc"]),
    _builtin("", "v1", "endpoints", "Endpoints", short=["ep"], categories=(), status=False),
    _builtin("", "v1", "events", "Event", short=["ev"], categories=(), status=False),
    _builtin("", "v1", "configmaps", "ConfigMap", short=["cm"], categories=(), status=False),
    _builtin("", "v1", "secrets", "Secret", categories=(), status=False),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"], categories=(), status=False),
    _builtin("apps", "v1", "deployments", "Deployment", short=["deploy"], extra=["scale"]),
    _builtin("apps", "v1", "replicasets", "ReplicaSet", short=["rs"]),
    _builtin("batch", "v1", "jobs", "Job"),
    _builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", categories=(), status=False),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", categories=(), status=False),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=["crd", "crds"],
        categories=("api-extensions",),
    ),
    _builtin("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute", categories=("gateway-api",)),
    _builtin(
        "networking.istio.io",
        "v1",
        "virtualservices",
        "VirtualService",
        short=["vs"],
        categories=("istio-io", "networking-istio-io"),
    ),
)


OPEN_SCHEMA = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def from_crd(crd: Mapping[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CRD."""
    spec = crd["spec"]
    names = spec["names"]
    types = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        types.append(
            ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                has_status="status" in (version.get("subresources") or {}),
                schema=(version.get("schema") or {}).get("openAPIV3Schema") or OPEN_SCHEMA,
                printer_columns=tuple(version.get("additionalPrinterColumns", ())),
            )
        )
    return types
