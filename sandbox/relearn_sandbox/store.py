"""The sandbox's object store: what etcd plus the generic registry do in a
real API server.

It keeps every object, assigns ``uid``, ``creationTimestamp``, a monotonic
``resourceVersion`` and ``generation``; enforces optimistic concurrency (409
on a stale ``resourceVersion``), the status subresource split, finalizers and
``deletionTimestamp``, namespaces, ownerReference garbage collection and
CRD (de)registration with schema admission; and keeps a bounded history of
changes for watches to resume from (410 Gone past it).

All methods are synchronous and meant to run on one event loop (the API
server's), so no locks are needed. In-process controllers (the kubelet)
subscribe to changes with :meth:`Store.subscribe`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import re
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from relearn.api import openapi
from relearn.api.base import rfc3339

from relearn_sandbox import errors, strategies
from relearn_sandbox.patching import PatchError, apply_patch
from relearn_sandbox.resources import BUILTINS, ResourceType, from_crd
from relearn_sandbox.selectors import Predicate

Key = tuple[str, str]  # (group, plural)
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
CRD_KEY: Key = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY: Key = ("", "namespaces")
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def now_rfc3339() -> str:
    return rfc3339(datetime.datetime.now(datetime.UTC).replace(microsecond=0))


@dataclass(frozen=True)
class Change:
    """One stored change, as watches see it."""

    rv: int
    key: Key
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None
    # The event as sent, by (apiVersion served, event type): encoded for the
    # first watch that sends it, the same bytes for every other watcher.
    encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, compare=False, repr=False)


@dataclass(eq=False)
class Watch:
    """A client's watch: a filter and the queue its matching changes go to."""

    key: Key
    namespace: str | None
    labels: Predicate
    fields: Predicate
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def event_for(self, change: Change) -> tuple[str, dict[str, Any]] | None:
        """The event this watch sends for a change, if any.

        An object that stops matching the selectors is DELETED for this
        watch, one that starts matching is ADDED, as a real server does.
        """
        if change.key != self.key:
            return None
        matches_now = self._matches(change.obj)
        matched_before = change.old is not None and self._matches(change.old)
        if change.type == "MODIFIED":
            if matches_now and not matched_before:
                return "ADDED", change.obj
            if matched_before and not matches_now:
                return "DELETED", change.obj
        return (change.type, change.obj) if matches_now else None

    def _matches(self, obj: Mapping[str, Any]) -> bool:
        if self.namespace is not None and obj.get("metadata", {}).get("namespace") != self.namespace:
            return False
        return self.labels(obj) and self.fields(obj)


class Store:
    def __init__(self, history: int = 20_000) -> None:
        self._types: dict[Key, dict[str, ResourceType]] = {}  # key -> version -> type
        self._objects: dict[Key, dict[tuple[str, str], dict[str, Any]]] = {}
        # (label key, value) -> the (namespace, name) of objects carrying it, per kind:
        # a list by label selector reads those, not the whole kind.
        self._by_label: dict[Key, dict[tuple[str, str], set[tuple[str, str]]]] = {}
        self._history: deque[Change] = deque(maxlen=history)
        self._watches: set[Watch] = set()
        self._subscribers: list[Callable[[Change], None]] = []
        self.resource_version = 0
        for rt in BUILTINS:
            self._register(rt)
        namespaces = self.type_for(*NAMESPACE_KEY)
        for name in INITIAL_NAMESPACES:
            self.create(namespaces, None, {"metadata": {"name": name}})

    # -- resource types -------------------------------------------------

    def _register(self, rt: ResourceType) -> None:
        self._types.setdefault((rt.group, rt.plural), {})[rt.version] = rt
        self._objects.setdefault((rt.group, rt.plural), {})
        self._by_label.setdefault((rt.group, rt.plural), {})

    def resource_types(self) -> Iterator[ResourceType]:
        for versions in self._types.values():
            yield from versions.values()

    def type_for(self, group: str, plural: str, version: str | None = None) -> ResourceType:
        versions = self._types.get((group, plural), {})
        if version is None and versions:
            return next(iter(versions.values()))
        if version in versions:
            return versions[version]
        raise errors.ApiError(404, "NotFound", f"the server could not find the requested resource ({plural})")

    # -- subscriptions --------------------------------------------------

    def subscribe(self, callback: Callable[[Change], None]) -> None:
        """Call ``callback`` synchronously for every change (in-process controllers)."""
        self._subscribers.append(callback)

    def open_watch(self, watch: Watch, since: str | None) -> list[tuple[str, dict[str, Any]]]:
        """Register a watch; return the events it must send first.

        No ``since`` (or "0"): every current object as ADDED. A version still
        in history: the changes after it. An older one: 410 Gone.
        """
        if not since or since == "0":
            initial = [("ADDED", obj) for obj in self._iter(watch.key, watch.namespace) if watch._matches(obj)]
        else:
            try:
                rv = int(since)
            except ValueError as error:
                raise errors.bad_request(f"invalid resourceVersion {since!r}") from error
            oldest = self._history[0].rv if self._history else self.resource_version + 1
            if rv < oldest - 1 and rv < self.resource_version:
                raise errors.gone(f"too old resource version: {rv} ({oldest - 1})")
            initial = [event for c in self._history if c.rv > rv and (event := watch.event_for(c))]
        self._watches.add(watch)
        return initial

    def close_watch(self, watch: Watch) -> None:
        self._watches.discard(watch)

    def end_watches(self) -> None:
        """Tell every open watch to finish (the server is shutting down)."""
        for watch in self._watches:
            watch.queue.put_nowait(None)

    def _record(self, key: Key, type_: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        change = Change(self.resource_version, key, type_, copy.deepcopy(obj), old)
        self._history.append(change)
        for watch in list(self._watches):
            if watch.event_for(change):
                watch.queue.put_nowait(change)
        for callback in self._subscribers:
            callback(change)

    def _next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    # -- reads ----------------------------------------------------------

    def _put(self, key: Key, ident: tuple[str, str], obj: dict[str, Any]) -> None:
        self._drop(key, ident)
        self._objects[key][ident] = obj
        index = self._by_label.setdefault(key, {})
        for pair in ((obj.get("metadata") or {}).get("labels") or {}).items():
            index.setdefault(pair, set()).add(ident)

    def _drop(self, key: Key, ident: tuple[str, str]) -> None:
        old = self._objects.get(key, {}).pop(ident, None)
        if old is None:
            return
        index = self._by_label.get(key, {})
        for pair in ((old.get("metadata") or {}).get("labels") or {}).items():
            holders = index.get(pair)
            if holders is not None:
                holders.discard(ident)
                if not holders:
                    del index[pair]

    def _iter(self, key: Key, namespace: str | None, labels: Predicate | None = None) -> Iterator[dict[str, Any]]:
        objects = self._objects.get(key, {})
        equalities = getattr(labels, "equalities", ())
        if equalities:  # only the objects carrying the selector's key=value terms
            index = self._by_label.get(key, {})
            idents = set.intersection(*(index.get(pair, set()) for pair in equalities))
            chosen = sorted((ident, objects[ident]) for ident in idents if ident in objects)
        else:
            chosen = sorted(objects.items())
        for (ns, _), obj in chosen:
            if namespace is None or ns == namespace:
                yield obj

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._objects[(rt.group, rt.plural)].get((namespace or "", name))
        if obj is None:
            raise errors.not_found(rt, name)
        return self._present(rt, obj)

    def list_objects(
        self, rt: ResourceType, namespace: str | None, labels: Predicate, fields: Predicate
    ) -> tuple[list[dict[str, Any]], str]:
        found = self._iter((rt.group, rt.plural), namespace, labels)
        items = [self._present(rt, o) for o in found if labels(o) and fields(o)]
        return items, str(self.resource_version)

    @staticmethod
    def _present(rt: ResourceType, obj: Mapping[str, Any]) -> dict[str, Any]:
        # Objects of a multi-version CRD are served at the version asked for.
        return {**copy.deepcopy(dict(obj)), "apiVersion": rt.api_version, "kind": rt.kind}

    # -- writes ---------------------------------------------------------

    def _check_namespace(self, rt: ResourceType, namespace: str | None) -> str:
        if not rt.namespaced:
            return ""
        if not namespace:
            raise errors.bad_request(f"{rt.plural} is namespaced: a namespace is required")
        if ("", namespace) not in self._objects[NAMESPACE_KEY]:
            raise errors.namespace_not_found(namespace)
        return namespace

    def _admit(self, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """Pruning, defaulting and validation of a custom resource (built-ins pass)."""
        if rt.schema is None:
            return obj
        admitted: dict[str, Any] = openapi.apply_defaults(rt.schema, openapi.prune(rt.schema, obj))
        problems = openapi.validate(rt.schema, admitted, old)
        if problems:
            raise errors.invalid(rt, obj["metadata"].get("name", ""), problems)
        return admitted

    def create(
        self, rt: ResourceType, namespace: str | None, body: Mapping[str, Any], *, dry_run: bool = False
    ) -> dict[str, Any]:
        obj = copy.deepcopy(dict(body))
        metadata = obj.setdefault("metadata", {})
        if rt.namespaced and metadata.get("namespace") and namespace and metadata["namespace"] != namespace:
            raise errors.bad_request("the namespace of the object does not match the namespace of the request")
        ns = self._check_namespace(rt, namespace or metadata.get("namespace"))
        if not metadata.get("name"):
            if not metadata.get("generateName"):
                raise errors.invalid(rt, "", [openapi.FieldError("metadata.name", "name or generateName is required")])
            suffix = "".join(secrets.choice(GENERATE_ALPHABET) for _ in range(5))
            metadata["name"] = metadata["generateName"] + suffix
        name = metadata["name"]
        if len(name) > 253 or not NAME_PATTERN.fullmatch(name):
            raise errors.invalid(
                rt, name, [openapi.FieldError("metadata.name", "a lowercase RFC 1123 subdomain is required", name)]
            )
        key = (rt.group, rt.plural)
        if (ns, name) in self._objects[key]:
            raise errors.already_exists(rt, name)
        if rt.has_status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.namespaced:
            metadata["namespace"] = ns
        else:
            metadata.pop("namespace", None)
        obj = self._admit(rt, obj, None)
        metadata = obj["metadata"]
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        strategies.prepare(rt, obj)
        for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
            metadata.pop(transient, None)
        if key == CRD_KEY:
            from_crd(obj)  # a CRD this server could not serve fails here, dry run or not
            _establish(obj)
        elif key == NAMESPACE_KEY:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
        if dry_run:
            return self._present(rt, obj)
        if key == CRD_KEY:
            self._accept_crd(obj)
        metadata["resourceVersion"] = self._next_rv()
        self._put(key, (ns, name), obj)
        self._record(key, "ADDED", obj, None)
        return self._present(rt, obj)

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """PUT: replace the object (or only its status through ``/status``)."""
        current = self._stored(rt, namespace, name)
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        if (body.get("metadata") or {}).get("name", name) != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        return self._replace(rt, current, copy.deepcopy(dict(body)), subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        current = self._stored(rt, namespace, name)
        if rt.is_custom and content_type == "application/strategic-merge-patch+json":
            raise errors.unsupported_media_type(
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            )
        try:
            patched = apply_patch(content_type, self._present(rt, current), patch)
        except PatchError as error:
            raise errors.ApiError(422, "Invalid", str(error)) from error
        wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        return self._replace(rt, current, patched, subresource, dry_run)

    def _stored(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        ns = namespace or "" if rt.namespaced else ""
        obj = self._objects[(rt.group, rt.plural)].get((ns, name))
        if obj is None:
            raise errors.not_found(rt, name)
        return obj

    def _replace(
        self,
        rt: ResourceType,
        current: dict[str, Any],
        wanted: dict[str, Any],
        subresource: str | None,
        dry_run: bool,
    ) -> dict[str, Any]:
        old_meta = current["metadata"]
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": wanted.get("status")}
            if new["status"] is None:
                new.pop("status")
        else:
            new = wanted
            new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
            if rt.has_status:
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for fixed in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation"):
                if fixed in old_meta:
                    meta[fixed] = old_meta[fixed]
                else:
                    meta.pop(fixed, None)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        strategies.prepare(rt, new)
        new = self._admit(rt, new, current)
        if new == current:
            return self._present(rt, current)  # a no-op write changes nothing, not even the version
        if _essence(new) != _essence(current):
            new["metadata"]["generation"] = old_meta.get("generation", 1) + 1
        key = (rt.group, rt.plural)
        if dry_run:
            return self._present(rt, new)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            return self._remove(rt, new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._put(key, (old_meta.get("namespace", ""), old_meta["name"]), new)
        self._record(key, "MODIFIED", new, current)
        if key == CRD_KEY:
            self._accept_crd(new)
        return self._present(rt, new)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        precondition_rv: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Delete, or mark for deletion while finalizers remain. Returns the object."""
        current = self._stored(rt, namespace, name)
        if precondition_rv and precondition_rv != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rt, name)
        if dry_run:
            return self._present(rt, current)
        if current["metadata"].get("finalizers"):
            if current["metadata"].get("deletionTimestamp"):
                return self._present(rt, current)
            marked = copy.deepcopy(current)
            marked["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
            marked["metadata"]["resourceVersion"] = self._next_rv()
            self._put((rt.group, rt.plural), (marked["metadata"].get("namespace", ""), name), marked)
            self._record((rt.group, rt.plural), "MODIFIED", marked, current)
            return self._present(rt, marked)
        return self._remove(rt, current, orphan=propagation == "Orphan")

    def _remove(self, rt: ResourceType, obj: dict[str, Any], *, orphan: bool = False) -> dict[str, Any]:
        key = (rt.group, rt.plural)
        meta = obj["metadata"]
        self._drop(key, (meta.get("namespace", ""), meta["name"]))
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._record(key, "DELETED", gone, obj)
        if key == NAMESPACE_KEY:
            self._delete_all(lambda k, o: o["metadata"].get("namespace") == meta["name"])
        elif key == CRD_KEY:
            self._forget_crd(obj)
        if not orphan:
            self._collect_garbage(meta["uid"])
        return self._present(rt, gone)

    def _collect_garbage(self, owner_uid: str) -> None:
        """Background propagation: dependents of a deleted owner are deleted too."""
        self._delete_all(
            lambda _, o: any(ref.get("uid") == owner_uid for ref in o["metadata"].get("ownerReferences") or ())
        )

    def _delete_all(self, select: Callable[[Key, dict[str, Any]], bool]) -> None:
        doomed = [(key, obj) for key, objects in self._objects.items() for obj in objects.values() if select(key, obj)]
        for key, obj in doomed:
            rt = self.type_for(*key)
            meta = obj["metadata"]
            if (meta.get("namespace", ""), meta["name"]) in self._objects[key]:
                self.delete(rt, meta.get("namespace"), meta["name"])

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: Predicate,
        fields: Predicate,
        *,
        propagation: str | None = None,
        dry_run: bool = False,
    ) -> list[dict[str, Any]]:
        items, _ = self.list_objects(rt, namespace, labels, fields)
        return [
            self.delete(
                rt, i["metadata"].get("namespace"), i["metadata"]["name"], propagation=propagation, dry_run=dry_run
            )
            for i in items
        ]

    # -- CRDs -----------------------------------------------------------

    def _accept_crd(self, crd: dict[str, Any]) -> None:
        """Serve a CRD's resource and report it Established, as the apiextensions controller does."""
        types = from_crd(crd)
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        self._types.pop(key, None)
        for rt in types:
            self._register(rt)
        _establish(crd)

    def _forget_crd(self, crd: dict[str, Any]) -> None:
        key = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for obj in list(self._objects.get(key, {}).values()):
            self._remove(self.type_for(*key), obj)
        self._types.pop(key, None)
        self._objects.pop(key, None)
        self._by_label.pop(key, None)

    # -- in-process helpers for controllers ----------------------------------

    def objects(self, group: str, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for o in self._iter((group, plural), namespace)]

    def try_get(self, group: str, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        obj = self._objects.get((group, plural), {}).get((namespace or "", name))
        return copy.deepcopy(obj) if obj is not None else None


def _essence(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What ``generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _establish(crd: dict[str, Any]) -> None:
    """The status the apiextensions controller writes: names accepted, Established."""
    names = crd["spec"]["names"]
    stamp = now_rfc3339()
    crd["status"] = {
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
        "conditions": [
            {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": stamp}
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
            )
        ],
    }
