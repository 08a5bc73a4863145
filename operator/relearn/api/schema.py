"""The CRD files as data: loading them, and validating a custom resource the
way the API server does at admission — the OpenAPI schema (types, bounds,
patterns, enums, required) and the CEL ``x-kubernetes-validations`` rules.

Used by ``relearn crds`` and ``relearn validate``, and by tests that check the
examples. Transition rules (those reading ``oldSelf``) need the stored object
and are skipped here, as on create.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from typing import Any

import yaml

from relearn.api import API_VERSION, KINDS, Kind
from relearn.api.openapi import FieldError, field_path, validate

__all__ = ["FieldError", "all_crds_yaml", "crd_texts", "field_path", "load_crd", "openapi_schema", "validate_object"]


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


def validate_object(obj: Mapping[str, Any]) -> list[FieldError]:
    """All admission errors of a Relearn custom resource, empty when it is valid."""
    api_version, kind_name = obj.get("apiVersion"), obj.get("kind")
    if api_version != API_VERSION:
        return [FieldError("apiVersion", f"expected {API_VERSION!r}, got {api_version!r}")]
    try:
        kind = next(k for k in KINDS if k.kind == kind_name)
    except StopIteration:
        return [FieldError("kind", f"not a Relearn kind: {kind_name!r}")]
    return validate(openapi_schema(kind), obj)


def all_crds_yaml() -> str:
    """Every CRD as one multi-document YAML stream (what ``relearn crds`` prints)."""
    return "---\n".join(text if text.endswith("\n") else text + "\n" for text in crd_texts().values())
