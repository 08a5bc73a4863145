"""The CRD files as data: loading them, and validating a custom resource the
way the API server does at admission — the OpenAPI schema (types, bounds,
patterns, enums, required) and the CEL ``x-kubernetes-validations`` rules.

Used by ``relearn crds`` and ``relearn validate``, and by tests that check the
examples. Transition rules (those reading ``oldSelf``) need the stored object
and are skipped here, as on create.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import celpy
import jsonschema
import yaml
from celpy.adapter import json_to_cel

from relearn.api import API_VERSION, KINDS, Kind


@dataclass(frozen=True)
class FieldError:
    """One reason an object is invalid, with the field it concerns."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def crd_texts() -> dict[str, str]:
    """The CRD YAML shipped in the package, by file name, in KINDS order."""
    root = resources.files("relearn") / "crds"
    return {k.crd_file: (root / k.crd_file).read_text(encoding="utf-8") for k in KINDS}


@functools.cache
def load_crd(kind: Kind) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load(crd_texts()[kind.crd_file])
    return crd


def openapi_schema(kind: Kind) -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the kind's served version."""
    (version,) = (v for v in load_crd(kind)["spec"]["versions"] if v["name"] == API_VERSION.split("/")[1])
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def field_path(parts: Sequence[str | int]) -> str:
    """``['spec', 'features', 0, 'name']`` -> ``spec.features[0].name``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


@functools.cache
def _validator(kind: Kind) -> jsonschema.protocols.Validator:
    # OpenAPI v3.0 keeps draft-4 semantics (boolean exclusiveMinimum/Maximum);
    # the x-kubernetes-* keywords are unknown to jsonschema and ignored.
    return jsonschema.Draft4Validator(openapi_schema(kind), format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def validate_object(obj: Mapping[str, Any]) -> list[FieldError]:
    """All admission errors of a Relearn custom resource, empty when it is valid."""
    api_version, kind_name = obj.get("apiVersion"), obj.get("kind")
    if api_version != API_VERSION:
        return [FieldError("apiVersion", f"expected {API_VERSION!r}, got {api_version!r}")]
    try:
        kind = next(k for k in KINDS if k.kind == kind_name)
    except StopIteration:
        return [FieldError("kind", f"not a Relearn kind: {kind_name!r}")]
    errors = [
        FieldError(field_path(list(e.absolute_path)), e.message)
        for e in sorted(_validator(kind).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if errors:
        # CEL rules run on schema-valid objects only, as in the API server.
        return errors
    return list(_cel_errors(openapi_schema(kind), obj, []))


def _cel_errors(schema: Mapping[str, Any], value: Any, path: list[str | int]) -> Iterator[FieldError]:
    for rule in schema.get("x-kubernetes-validations", ()):
        if "oldSelf" in rule["rule"]:
            continue
        if not _evaluate_rule(rule["rule"], value):
            where = path + [p for p in rule.get("fieldPath", "").split(".") if p]
            yield FieldError(field_path(where), rule.get("message") or f"failed rule: {rule['rule']}")
    if isinstance(value, Mapping):
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                yield from _cel_errors(sub, value[name], [*path, name])
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            yield from _cel_errors(schema["items"], item, [*path, index])


@functools.cache
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _evaluate_rule(rule: str, value: Any) -> bool:
    return bool(_program(rule).evaluate({"self": json_to_cel(value)}))


def all_crds_yaml() -> str:
    """Every CRD as one multi-document YAML stream (what ``relearn crds`` prints)."""
    return "---\n".join(text if text.endswith("\n") else text + "\n" for text in crd_texts().values())
