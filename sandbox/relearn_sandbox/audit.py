"""Who called the sandbox's API server, and what each caller may do.

The API server (:mod:`.apiserver`) records every resource request as an
:class:`ApiCall` — the caller's identity, the RBAC verb, API group, resource,
subresource and namespace — and, for an identity given :class:`Grant`\\ s,
answers 403 Forbidden to a request no grant allows, as a real server's RBAC
authorizer would. Identities come from bearer tokens: the sandbox writes a
second kubeconfig for the operator (``kubeconfig-operator``) whose token maps
to the identity ``operator``, so its calls are told apart from the tests' and
kubectl's (``admin``).

Used by the RBAC test (tests/integration/test_rbac.py), which compares the
operator's calls in a whole loop with the Helm chart's rules both ways.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ADMIN = "admin"  # requests without a token (insecure mode) or with the sandbox's own token
OPERATOR = "operator"


@dataclass(frozen=True)
class ApiCall:
    """One resource request as RBAC sees it, and how it was answered."""

    user: str
    verb: str  # get, list, watch, create, update, patch, delete, deletecollection
    group: str  # "" for the core group
    resource: str  # the plural, e.g. "deployments"
    subresource: str | None  # "status", "log", "scale" ...
    namespace: str | None
    name: str | None
    code: int  # the HTTP status answered
    at: float = 0.0  # when it arrived (time.monotonic() of the sandbox's process)

    @property
    def rbac_resource(self) -> str:
        """The resource as an RBAC rule names it: ``deployments`` or ``deployments/scale``."""
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


def verb_of(method: str, *, named: bool, watch: bool) -> str:
    """The RBAC verb of an HTTP request on a resource path."""
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if named else "list"
    if method == "DELETE":
        return "delete" if named else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


@dataclass(frozen=True)
class Grant:
    """RBAC rules (as a Role's or ClusterRole's ``rules``) bound to an identity
    in one namespace (a RoleBinding) or in all of them (``namespace=None``,
    a ClusterRoleBinding)."""

    rules: Sequence[Mapping[str, Any]]
    namespace: str | None = None

    def allows(self, call: ApiCall) -> bool:
        if self.namespace is not None and call.namespace != self.namespace:
            return False  # a Role never covers cluster-scoped resources or other namespaces
        return any(_rule_allows(rule, call) for rule in self.rules)


def _rule_allows(rule: Mapping[str, Any], call: ApiCall) -> bool:
    def matches(values: Iterable[str], value: str) -> bool:
        listed = list(values)
        return "*" in listed or value in listed

    if not matches(rule.get("apiGroups") or (), call.group):
        return False
    if not matches(rule.get("resources") or (), call.rbac_resource):
        return False
    if not matches(rule.get("verbs") or (), call.verb):
        return False
    names = rule.get("resourceNames")
    return not names or (call.name is not None and call.name in names)


class Audit:
    """The call log (bounded) and the grants enforced per identity."""

    def __init__(self, limit: int = 500_000) -> None:
        self.calls: collections.deque[ApiCall] = collections.deque(maxlen=limit)
        self.grants: dict[str, list[Grant]] = {}

    def enforce(self, user: str, grants: Iterable[Grant] | None) -> None:
        """From now on ``user`` may do only what ``grants`` allow (None: anything again)."""
        if grants is None:
            self.grants.pop(user, None)
        else:
            self.grants[user] = list(grants)

    def allowed(self, call: ApiCall) -> bool:
        grants = self.grants.get(call.user)
        return grants is None or any(grant.allows(call) for grant in grants)

    def record(self, call: ApiCall) -> None:
        self.calls.append(call)

    def of(self, user: str) -> list[ApiCall]:
        # A copy first (one C call, under the GIL): the sandbox's thread appends while others read.
        return [call for call in list(self.calls) if call.user == user]

    def clear(self) -> None:
        self.calls.clear()
