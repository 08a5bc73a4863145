"""Label and field selectors as the API server parses them from a query
string (``?labelSelector=app=x,tier!=db,env in (a,b),!legacy``).

Hand-written because no maintained Python package parses Kubernetes selector
strings; the grammar is small and the tests cover each operator.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, Any]], bool]


class SelectorError(ValueError):
    """A selector the API server would answer with 400 Bad Request."""


def _split_terms(text: str) -> list[str]:
    terms, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current.strip())
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current.strip())
    return terms


_SET_TERM = re.compile(r"^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_TERM = re.compile(r"^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$")
_EXISTS_TERM = re.compile(r"^(!?)([\w./-]+)$")


def parse_label_selector(text: str | None) -> Predicate:
    """A predicate over an object's ``metadata.labels``."""
    requirements: list[tuple[str, str, frozenset[str]]] = []  # (key, operator, values)
    for term in _split_terms(text or ""):
        if match := _SET_TERM.fullmatch(term):
            key, op, values_text = match.groups()
            requirements.append((key, op, frozenset(v.strip() for v in values_text.split(",") if v.strip())))
        elif match := _EQ_TERM.fullmatch(term):
            key, op, value = match.groups()
            requirements.append((key, "notin" if op == "!=" else "in", frozenset([value])))
        elif match := _EXISTS_TERM.fullmatch(term):
            negate, key = match.groups()
            requirements.append((key, "!" if negate else "exists", frozenset()))
        else:
            raise SelectorError(f"unable to parse requirement: {term!r}")

    return LabelSelector(tuple(requirements))


class LabelSelector:
    """A parsed label selector: a predicate, and the ``key=value`` terms an
    index can answer (:meth:`relearn_sandbox.store.Store.list_objects`)."""

    def __init__(self, requirements: tuple[tuple[str, str, frozenset[str]], ...]) -> None:
        self.requirements = requirements
        self.equalities = tuple(
            (key, next(iter(values))) for key, op, values in requirements if op == "in" and len(values) == 1
        )

    def __call__(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(_holds(labels, key, op, values) for key, op, values in self.requirements)


def _holds(labels: Mapping[str, str], key: str, op: str, values: frozenset[str]) -> bool:
    if op == "in":
        return labels.get(key) in values
    if op == "notin":
        return labels.get(key) not in values
    return (key in labels) == (op == "exists")


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    """The value at a dotted field path, as the string a field selector compares."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def parse_field_selector(text: str | None) -> Predicate:
    """A predicate over dotted fields (``metadata.name``, ``involvedObject.uid``...).

    A real API server allows a few fields per kind; the sandbox allows any
    dotted path, which covers what kubectl and the operator send.
    """
    requirements: list[tuple[str, bool, str]] = []  # (path, equal, value)
    for term in _split_terms(text or ""):
        match = re.match(r"^([\w.]+)\s*(==|=|!=)\s*(.*)$", term)
        if not match:
            raise SelectorError(f"invalid field selector: {term!r}")
        path, op, value = match.groups()
        requirements.append((path, op != "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all(((field_value(obj, path) or "") == value) == equal for path, equal, value in requirements)

    return matches
