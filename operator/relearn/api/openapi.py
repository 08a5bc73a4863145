"""Structural OpenAPI v3 schemas as the Kubernetes API server applies them to
custom resources: pruning of unknown fields, defaulting, validation (types,
bounds, patterns, enums, required) and CEL ``x-kubernetes-validations``
rules, including transition rules against the stored object.

One implementation for both users: ``relearn validate`` (via
:mod:`relearn.api.schema`) and the sandbox API server's admission.
Validation is jsonschema's draft 4 (OpenAPI 3.0 keeps its boolean
``exclusiveMinimum``); CEL is cel-python.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

# Fields every object has whatever its schema says.
ROOT_FIELDS = ("apiVersion", "kind", "metadata")


@dataclass(frozen=True)
class FieldError:
    """One reason an object is invalid, with the field it concerns."""

    field: str
    message: str
    value: Any = None

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def field_path(parts: Sequence[str | int]) -> str:
    """``['spec', 'features', 0, 'name']`` -> ``spec.features[0].name``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


def prune(schema: Mapping[str, Any], value: Any, *, root: bool = True) -> Any:
    """A copy of ``value`` without the fields the schema does not declare."""
    if isinstance(value, Mapping):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return copy.deepcopy(dict(value))
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        result = {}
        for key, sub in value.items():
            if root and key in ROOT_FIELDS:
                result[key] = copy.deepcopy(sub)
            elif key in properties:
                result[key] = prune(properties[key], sub, root=False)
            elif isinstance(extra, Mapping):
                result[key] = prune(extra, sub, root=False)
            elif extra is True or schema.get("x-kubernetes-preserve-unknown-fields"):
                result[key] = copy.deepcopy(sub)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [prune(schema["items"], item, root=False) for item in value]
    return copy.deepcopy(value)


def unknown_fields(schema: Mapping[str, Any], value: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """Paths of the fields :func:`prune` would drop (for strict field validation)."""
    found: list[str] = []
    if isinstance(value, Mapping):
        if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
            return found
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            if not path and key in ROOT_FIELDS:
                continue
            if key in properties:
                found += unknown_fields(properties[key], sub, (*path, key))
            elif isinstance(extra, Mapping):
                found += unknown_fields(extra, sub, (*path, key))
            elif not (extra is True or schema.get("x-kubernetes-preserve-unknown-fields")):
                found.append(field_path([*path, key]))
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            found += unknown_fields(schema["items"], item, (*path, index))
    return found


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """A copy of ``value`` with every missing defaulted field filled in, recursively."""
    if isinstance(value, Mapping):
        result = dict(value)
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in result and "default" in sub:
                result[key] = copy.deepcopy(sub["default"])
            if key in result:
                result[key] = apply_defaults(sub, result[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for key in result.keys() - properties.keys():
                result[key] = apply_defaults(extra, result[key])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def validate(schema: Mapping[str, Any], value: Any, old: Any = None) -> list[FieldError]:
    """Every admission error of ``value`` (empty when valid). ``old`` is the
    stored object on update, for transition rules; None on create."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors = [
        FieldError(field_path(list(e.absolute_path)), e.message, e.instance)
        for e in sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if errors:
        # CEL rules run on schema-valid objects only, as in the API server.
        return errors
    return list(_cel_errors(schema, value, old, []))


def _cel_errors(schema: Mapping[str, Any], value: Any, old: Any, path: list[str | int]) -> Iterator[FieldError]:
    for rule in schema.get("x-kubernetes-validations", ()):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        if not _evaluate_rule(rule["rule"], value, old if transition else None):
            where = path + [p for p in rule.get("fieldPath", "").split(".") if p]
            message = rule.get("message") or f"failed rule: {rule['rule']}"
            yield FieldError(field_path(where), message, value)
    if isinstance(value, Mapping):
        old_map = old if isinstance(old, Mapping) else {}
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_errors(sub, value[name], old_map.get(name), [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            # List items are matched by position only for transition rules on
            # atomic lists; a changed list simply has no old item.
            old_item = old[index] if isinstance(old, list) and index < len(old) else None
            yield from _cel_errors(schema["items"], item, old_item, [*path, index])


@functools.lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _evaluate_rule(rule: str, value: Any, old: Any) -> bool:
    activation = {"self": json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    try:
        return bool(_program(rule).evaluate(activation))
    except CELEvalError:
        return False
