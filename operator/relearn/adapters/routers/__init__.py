"""Routers: how an experiment's traffic is split between champion and
challenger. One small interface, one module per provider:

- :mod:`.gateway_api`: Gateway API ``HTTPRoute`` (v1) backendRef weights;
- :mod:`.istio`: Istio ``VirtualService`` route weights;
- :mod:`.replicas`: one Service over both Deployments, the weight
  approximated by replica counts (for clusters without a mesh or gateway).

A shadow stage mirrors requests to the challenger (``set_mirror``; not with
``replicas``), and ``spec.routing.stickiness`` keeps each client on one arm.
Every router reports weights as the routing object says them (or, for
``replicas``, as the ready pods make them), never as they were asked for.
Each provider keeps its edits as pure functions of the object, so the
manifests it writes are checked without a cluster.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from relearn.adapters.kube import ENDPOINTS, ENDPOINTSLICES, KubeClient
from relearn.api.abexperiment import Stickiness
from relearn.core import switching
from relearn.errors import RelearnError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Arm = Literal["champion", "challenger"]


@dataclass(frozen=True)
class Backend:
    """One arm's serving workload: its version, Deployment and Service."""

    version: str
    deployment: str
    service: str


@dataclass(frozen=True)
class Split:
    champion: Backend
    challenger: Backend


@dataclass(frozen=True)
class Weights:
    """Percent of traffic per arm."""

    champion: int
    challenger: int


class RouterError(RelearnError):
    """The routing object cannot be used as it is; ``reason`` goes to a condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason=reason)


def percentages(champion: float, challenger: float) -> Weights:
    """Relative weights as whole percents that add up to 100 (0/0 stays 0/0)."""
    total = champion + challenger
    if total <= 0:
        return Weights(0, 0)
    share = round(100 * challenger / total)
    return Weights(100 - share, share)


class Router(ABC):
    """One provider's routing. Besides the four operations, a router states
    what differs between providers, so the handlers never ask which one they have:

    - ``owns_services``: each arm has its own Service, which the experiment
      creates for the challenger, pins to the champion's version for the
      champion and removes afterwards (False: one Service, the target,
      selects the pods of both arms);
    - ``routes_by_ready_pods``: the split is made by ready pods, so there are no
      endpoints to wait for, no route entry to restore, and a warm previous
      champion cannot stay in the route at weight 0;
    - :meth:`arm_service` and :meth:`initial_replicas`: the challenger's
      Service and replica count;
    - ``can_mirror``: whether it can copy requests to the challenger
      (:meth:`set_mirror`) for a shadow stage;
    - ``stickiness``: when set, every route it writes keeps each client on
      the arm it was first sent to (the routing object's own matches).
    """

    provider: str
    owns_services: bool = True
    routes_by_ready_pods: bool = False
    can_mirror: bool = True

    def __init__(self, kube: KubeClient, namespace: str, target: str, stickiness: Stickiness | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.target = target
        self.stickiness = stickiness

    def arm_service(self, own_service: str) -> str:
        """The Service in front of an arm whose own Service would be ``own_service``."""
        return own_service if self.owns_services else self.target

    def initial_replicas(self, total: int, first_weight: int) -> int:
        """Replicas of a new challenger, given the champion's ``total`` and the first weight."""
        return total

    @abstractmethod
    async def services(self) -> dict[str, int]:
        """Services the target sends traffic to, with their weights."""

    @abstractmethod
    async def reconcile(self, split: Split) -> None:
        """Make the target able to send traffic to both arms (the challenger
        at weight 0 when it is new); idempotent."""

    @abstractmethod
    async def set_weights(self, split: Split, challenger: int) -> None:
        """Send ``challenger`` percent of traffic to the challenger, the rest to the champion."""

    @abstractmethod
    async def get_weights(self, split: Split) -> Weights:
        """The split as the routing object (or the ready pods) says it is."""

    @abstractmethod
    async def finalize(self, split: Split, keep: Arm) -> None:
        """All traffic to ``keep``; the other arm is taken out of the target."""

    async def set_mirror(self, split: Split, percent: int) -> None:
        """Copy ``percent`` of the champion's requests to the challenger, whose
        answers are discarded (0: no copies). Only where ``can_mirror``."""
        raise RouterError(
            "MirrorUnsupported", f"routing provider {self.provider} cannot mirror requests (traffic.shadow)"
        )

    async def get_mirror(self, split: Split) -> int:
        """Percent of requests the routing object mirrors to the challenger."""
        return 0

    async def route_applied(self) -> bool | None:
        """Whether the data plane has applied the target's current spec
        (:func:`relearn.core.switching.route_applied`); None when the
        provider does not report it."""
        return None

    async def ready_endpoints(self, service: str) -> int:
        """Ready addresses behind ``service``: its EndpointSlices, else its Endpoints."""
        slices = await self.kube.list_objects(ENDPOINTSLICES, self.namespace, f"{SERVICE_NAME_LABEL}={service}")
        endpoints = None if slices else await self.kube.get(ENDPOINTS, self.namespace, service)
        return switching.ready_endpoints(slices, endpoints)


def router_for(
    provider: str, kube: KubeClient, namespace: str, target: str, stickiness: Stickiness | None = None
) -> Router:
    from relearn.adapters.routers.gateway_api import GatewayAPIRouter
    from relearn.adapters.routers.istio import IstioRouter
    from relearn.adapters.routers.replicas import ReplicasRouter

    kinds: dict[str, type[Router]] = {
        "gateway-api": GatewayAPIRouter,
        "istio": IstioRouter,
        "replicas": ReplicasRouter,
    }
    return kinds[provider](kube, namespace, target, stickiness)
