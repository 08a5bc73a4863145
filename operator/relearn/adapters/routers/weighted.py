"""What the Gateway API and Istio routers share: a routing object whose
rules each hold a list of weighted destinations. A provider says where the
lists are, which destination is a given Service and how to make a new one;
the edits (add the challenger, set weights, read weights, keep one arm) are
the same, and are pure functions of the object so its manifests can be
checked without a cluster.

Every rule with a destination to the champion's Service gets one to the
challenger's Service beside it (at weight 0, same port); only those two
destinations' weights change, others in the rule are left alone. The object
is replaced with its resourceVersion as precondition, so a concurrent edit
(a GitOps sync) is re-read, never overwritten.

A shadow stage's mirror sits on each weighted rule that routes to the
champion (:meth:`WeightedRouter.put_mirror_all`) and goes once the
challenger takes live traffic. With ``stickiness``, each arm's destination
marks its responses and a sticky rule per arm with weight, before the
weighted rule, sends marked requests to it (:meth:`WeightedRouter.stick`);
the weights are read from the weighted rules only. A provider says how a
mirror, a mark and a sticky rule are written.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from relearn.adapters.kube import Resource
from relearn.adapters.routers import Arm, Router, RouterError, Split, Weights, percentages
from relearn.core import switching
from relearn.core.durations import parse_duration


class WeightedRouter(Router):
    resource: Resource
    kind: str
    default_weight: int  # a destination's weight when it has none

    @abstractmethod
    def rules(self, obj: dict[str, Any]) -> list[dict[str, Any]]:
        """The object's rules (the list itself, to edit in place)."""

    @abstractmethod
    def destinations_of(self, rule: dict[str, Any]) -> list[dict[str, Any]]:
        """A rule's destination list (the list itself, to edit in place)."""

    def destinations(self, obj: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Each weighted rule's destination list; the sticky rules this router writes are not among them."""
        return [self.destinations_of(rule) for rule in self.rules(obj) if not self.is_sticky_rule(rule)]

    # -- what differs for mirroring and stickiness ------------------------------

    @abstractmethod
    def mirror_of(self, rule: dict[str, Any], service: str) -> int | None:
        """Percent the rule mirrors to ``service``; None when it does not."""

    @abstractmethod
    def put_mirror(self, rule: dict[str, Any], model: dict[str, Any], service: str, percent: int) -> None:
        """The rule mirrors ``percent`` of its requests to ``service`` (port as ``model``'s); 0 removes it."""

    @abstractmethod
    def mark(self, destination: dict[str, Any], value: str | None) -> None:
        """Responses from ``destination`` carry the sticky mark ``value`` (None: no mark)."""

    @abstractmethod
    def sticky_rule(self, rule: dict[str, Any], destination: dict[str, Any], value: str) -> dict[str, Any]:
        """A copy of ``rule`` for requests that carry the mark ``value``, all to ``destination``."""

    @abstractmethod
    def is_sticky_rule(self, rule: dict[str, Any]) -> bool:
        """Whether a rule is one :meth:`sticky_rule` wrote."""

    def set_cookie(self, value: str) -> str:
        """The Set-Cookie value that pins a client to ``value``."""
        assert self.stickiness is not None
        assert self.stickiness.cookie is not None
        seconds = int(parse_duration(self.stickiness.max_age).total_seconds())
        return f"{self.stickiness.cookie}={value}; Max-Age={seconds}; Path=/"

    def cookie_prefix(self) -> str:
        """How every Cookie-header pattern this router writes begins."""
        assert self.stickiness is not None
        assert self.stickiness.cookie is not None
        return f"(.*;\\s*)?{re.escape(self.stickiness.cookie)}="

    def cookie_pattern(self, value: str) -> str:
        """A regular expression for a Cookie header that carries the mark
        ``value``; it matches the whole header, as Envoy's (RE2) matchers need."""
        return f"{self.cookie_prefix()}{re.escape(value)}(;.*)?"

    @abstractmethod
    def service_of(self, destination: dict[str, Any]) -> str | None:
        """The name of the Service in this namespace a destination sends to, if any."""

    def is_service(self, destination: dict[str, Any], service: str) -> bool:
        return self.service_of(destination) == service

    @abstractmethod
    def for_service(self, model: dict[str, Any], service: str) -> dict[str, Any]:
        """A destination like ``model`` (same port), to ``service``, at weight 0."""

    # -- pure edits -------------------------------------------------------------

    def _rules(self, obj: dict[str, Any], *services: str) -> Iterator[list[dict[str, Any]]]:
        """Each rule's destinations that send to any of ``services``."""
        for group in self.destinations(obj):
            if any(self.is_service(d, s) for d in group for s in services):
                yield group

    def add_challenger(self, obj: dict[str, Any], split: Split) -> None:
        """Both arms in every rule that routes to either: the missing one is
        added beside the other at weight 0 (the challenger when an experiment
        starts; the previous champion when a rollback brings it back)."""
        arms = (split.champion.service, split.challenger.service)
        groups = list(self._rules(obj, *arms))
        if not groups:
            raise RouterError(
                "NoChampionBackend",
                f"{self.kind} {obj['metadata']['name']} routes nothing to the champion's Service "
                f"{split.champion.service}",
            )
        for group in groups:
            present = [s for s in arms if any(self.is_service(d, s) for d in group)]
            for missing in (s for s in arms if s not in present):
                model = next(d for d in group if self.is_service(d, present[0]))
                group.append(self.for_service(model, missing))
        self.stick(obj, split)

    def stick(self, obj: dict[str, Any], split: Split, *, on: bool = True) -> None:
        """The sticky rules rebuilt: before each weighted rule that routes to
        the arms, one per arm that has weight there, for requests that carry
        its mark, and each arm's destination marking its responses (``on``
        False: all of them removed). An arm at weight 0 (not ready, in shadow,
        promoted away from or rolled back) keeps no client: its marked clients
        go by the weights. Without stickiness the object is left alone."""
        if self.stickiness is None:
            return
        rules = self.rules(obj)
        rules[:] = [rule for rule in rules if not self.is_sticky_rule(rule)]
        arms = (split.champion, split.challenger)
        for index in reversed(range(len(rules))):
            rule = rules[index]
            group = self.destinations_of(rule)
            routed = [arm for arm in arms if any(self.is_service(d, arm.service) for d in group)]
            for destination in group:
                arm = next((a for a in routed if self.is_service(destination, a.service)), None)
                if arm is not None:
                    self.mark(destination, arm.version if on else None)
            if not on or not routed:
                continue
            sticky = []
            for arm in routed:
                destination = next(d for d in group if self.is_service(d, arm.service))
                if int(destination.get("weight", self.default_weight)) > 0:
                    sticky.append(self.sticky_rule(rule, destination, arm.version))
            rules[index:index] = sticky

    def put_mirror_all(self, obj: dict[str, Any], split: Split, percent: int) -> None:
        """Every weighted rule that routes to the champion mirrors ``percent`` to the challenger."""
        for rule in self.rules(obj):
            if self.is_sticky_rule(rule):
                continue
            model = next((d for d in self.destinations_of(rule) if self.is_service(d, split.champion.service)), None)
            if model is not None:
                self.put_mirror(rule, model, split.challenger.service, percent)
            elif self.mirror_of(rule, split.challenger.service) is not None:
                self.put_mirror(rule, {}, split.challenger.service, 0)

    def mirrored(self, obj: dict[str, Any], split: Split) -> int:
        """Percent mirrored to the challenger by the first rule that routes to the champion."""
        for rule in self.rules(obj):
            if not self.is_sticky_rule(rule) and any(
                self.is_service(d, split.champion.service) for d in self.destinations_of(rule)
            ):
                return self.mirror_of(rule, split.challenger.service) or 0
        return 0

    def put_weights(self, obj: dict[str, Any], split: Split, challenger: int) -> None:
        """``challenger`` percent to the challenger. A challenger that takes
        live traffic is no longer mirrored to (a shadow stage ends with its
        first weight, or a promotion), so it never answers a request twice."""
        self.add_challenger(obj, split)
        if challenger > 0:
            for rule in self.rules(obj):
                if self.mirror_of(rule, split.challenger.service) is not None:
                    self.put_mirror(rule, {}, split.challenger.service, 0)
        for group in self._rules(obj, split.champion.service, split.challenger.service):
            for destination in group:
                if self.is_service(destination, split.champion.service):
                    destination["weight"] = 100 - challenger
                elif self.is_service(destination, split.challenger.service):
                    destination["weight"] = challenger
        self.stick(obj, split)  # the sticky rules follow the new weights

    def weights(self, obj: dict[str, Any], split: Split) -> Weights:
        """The split of the first rule that routes to the arms."""

        def total(group: list[dict[str, Any]], service: str) -> int:
            return sum(int(d.get("weight", self.default_weight)) for d in group if self.is_service(d, service))

        for group in self._rules(obj, split.champion.service):
            return percentages(total(group, split.champion.service), total(group, split.challenger.service))
        for group in self._rules(obj, split.challenger.service):  # the champion is out: after finalize
            return percentages(0, total(group, split.challenger.service))
        return Weights(0, 0)

    def served(self, obj: dict[str, Any]) -> dict[str, int]:
        """Weight per Service over every rule (a Service in several rules sums)."""
        result: dict[str, int] = {}
        for group in self.destinations(obj):
            for destination in group:
                service = self.service_of(destination)
                if service is not None:
                    result[service] = result.get(service, 0) + int(destination.get("weight", self.default_weight))
        return result

    def keep_only(self, obj: dict[str, Any], split: Split, keep: Arm) -> None:
        """Everything to ``keep``; the other arm's destination, the mirror and the sticky rules removed."""
        kept, dropped = (split.champion, split.challenger) if keep == "champion" else (split.challenger, split.champion)
        for rule in self.rules(obj):
            if self.mirror_of(rule, split.challenger.service) is not None:
                self.put_mirror(rule, {}, split.challenger.service, 0)
        self.stick(obj, split, on=False)
        for group in self.destinations(obj):
            if not any(self.is_service(d, kept.service) for d in group):
                continue
            group[:] = [d for d in group if not self.is_service(d, dropped.service)]
            for destination in group:
                if self.is_service(destination, kept.service):
                    destination["weight"] = 100

    # -- against the API ----------------------------------------------------------

    async def _read(self) -> dict[str, Any]:
        obj = await self.kube.get(self.resource, self.namespace, self.target)
        if obj is None:
            raise RouterError("RouteNotFound", f"{self.kind} {self.namespace}/{self.target} does not exist")
        return obj

    async def _edit(self, edit: Callable[[dict[str, Any]], None]) -> None:
        await self._read()
        await self.kube.modify(self.resource, self.namespace, self.target, edit)

    async def services(self) -> dict[str, int]:
        return self.served(await self._read())

    async def reconcile(self, split: Split) -> None:
        await self._edit(lambda obj: self.add_challenger(obj, split))

    async def set_weights(self, split: Split, challenger: int) -> None:
        await self._edit(lambda obj: self.put_weights(obj, split, challenger))

    async def get_weights(self, split: Split) -> Weights:
        return self.weights(await self._read(), split)

    async def set_mirror(self, split: Split, percent: int) -> None:
        await self._edit(lambda obj: self.put_mirror_all(obj, split, percent))

    async def get_mirror(self, split: Split) -> int:
        return self.mirrored(await self._read(), split)

    async def finalize(self, split: Split, keep: Arm) -> None:
        await self._edit(lambda obj: self.keep_only(obj, split, keep))

    async def route_applied(self) -> bool | None:
        return switching.route_applied(await self._read())
