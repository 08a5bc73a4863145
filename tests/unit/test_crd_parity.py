"""The pydantic models and the CRD schemas say the same thing.

``crds/*.yaml`` is the source of truth; ``relearn.api`` mirrors it. This walks
both trees and fails on any difference in fields, types, enums, defaults,
required fields and bounds, naming the path where they part.
"""

from __future__ import annotations

from typing import Any

import pytest
from relearn.api import KINDS, Kind
from relearn.api.schema import openapi_schema

# Keywords that must agree. Descriptions, formats other than date-time and the
# x-kubernetes-* list/validation markers are the CRD's business alone.
BOUNDS = ("minLength", "maxLength", "pattern", "minItems", "maxItems")


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = _resolve(node["allOf"][0], defs)
        node = {**inner, **{k: v for k, v in node.items() if k != "allOf"}}
    any_of = node.get("anyOf")
    if any_of is not None:
        # X | None: the null branch is pydantic's way of saying "optional".
        branches = [b for b in any_of if b.get("type") != "null"]
        if len(branches) == 1:
            outer = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**_resolve(branches[0], defs), **outer}
        else:
            node = {**node, "anyOf": [_resolve(b, defs) for b in branches]}
    return node


def _numeric_bounds(node: dict[str, Any], *, openapi: bool) -> dict[str, Any]:
    """Normalise to JSON Schema 2020 style: exclusive bounds carry the number."""
    bounds: dict[str, Any] = {}
    for inclusive, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if openapi:
            if inclusive in node:
                bounds[exclusive if node.get(exclusive) else inclusive] = node[inclusive]
        else:
            for key in (inclusive, exclusive):
                if key in node:
                    bounds[key] = node[key]
    return bounds


def _defaults(crd: dict[str, Any], model: dict[str, Any], path: str, in_list: bool) -> list[str]:
    crd_default, model_default = crd.get("default"), model.get("default")
    if in_list:
        return [f"{path}: a default inside a list item (make it the model's alone)"] if crd_default is not None else []
    if crd_default == {} and crd.get("type") == "object":
        # An object defaulted to {} is a model field with a default factory.
        return [f"{path}: defaulted to {{}} in the CRD but required in the model"] if model.get("x-required") else []
    if (model_default is not None or crd_default is not None) and crd_default != model_default:
        return [f"{path}: default differs: CRD {crd_default!r} vs model {model_default!r}"]
    return []


def _fields(crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str, in_list: bool) -> list[str]:
    problems: list[str] = []
    crd_props, model_props = crd.get("properties", {}), model.get("properties", {})
    if set(crd_props) != set(model_props):
        problems.append(
            f"{path}: fields differ: only in CRD {sorted(set(crd_props) - set(model_props))}, "
            f"only in model {sorted(set(model_props) - set(crd_props))}"
        )
    required = set(model.get("required", []))
    if sorted(crd.get("required", [])) != sorted(required):
        problems.append(
            f"{path}: required differs: CRD {sorted(crd.get('required', []))!r} vs model {sorted(required)!r}"
        )
    for name in sorted(set(crd_props) & set(model_props)):
        sub = {**model_props[name], "x-required": name in required}
        problems += compare(crd_props[name], sub, defs, f"{path}.{name}", in_list)
    if "additionalProperties" in crd or "additionalProperties" in model:
        crd_extra, model_extra = crd.get("additionalProperties"), model.get("additionalProperties")
        if isinstance(crd_extra, dict) and isinstance(model_extra, dict):
            problems += compare(crd_extra, model_extra, defs, f"{path}.*", in_list)
        elif not (crd_extra in (None, False) and model_extra in (None, False)):
            problems.append(f"{path}: additionalProperties differ: {crd_extra!r} vs {model_extra!r}")
    return problems


def compare(
    crd: dict[str, Any], model: dict[str, Any], defs: dict[str, Any], path: str, in_list: bool = False
) -> list[str]:
    """Differences between a CRD schema node and its model's. Inside list items the CRD stores no
    default (kubectl's client-side apply replaces whole lists: a stored default there makes every
    re-apply a change), so there only the model's default counts."""
    model = _resolve(model, defs)
    problems: list[str] = []

    def differ(what: str, crd_value: Any, model_value: Any) -> None:
        if crd_value != model_value:
            problems.append(f"{path}: {what} differs: CRD {crd_value!r} vs model {model_value!r}")

    if crd.get("x-kubernetes-int-or-string"):
        differ("type", ["integer", "string"], sorted(b.get("type") for b in model.get("anyOf", [])))
        return problems
    differ("type", crd.get("type"), model.get("type"))
    differ("enum", crd.get("enum"), model.get("enum") or ([model["const"]] if "const" in model else None))
    differ("numeric bounds", _numeric_bounds(crd, openapi=True), _numeric_bounds(model, openapi=False))
    for key in BOUNDS:
        differ(key, crd.get(key), model.get(key))
    if "date-time" in (crd.get("format"), model.get("format")):
        differ("format", crd.get("format"), model.get("format"))

    problems += _defaults(crd, model, path, in_list)
    if crd.get("type") == "object":
        problems += _fields(crd, model, defs, path, in_list)
    if crd.get("type") == "array":
        problems += compare(crd["items"], model["items"], defs, f"{path}[]", in_list=True)
    return problems


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
@pytest.mark.parametrize("part", ["spec", "status"])
def test_model_mirrors_crd_schema(kind: Kind, part: str) -> None:
    model_cls = kind.spec if part == "spec" else kind.status
    model_schema = model_cls.model_json_schema(by_alias=True, mode="validation")
    crd_schema = openapi_schema(kind)["properties"][part]
    problems = compare(crd_schema, model_schema, model_schema.get("$defs", {}), f"{kind.kind}.{part}")
    assert not problems, "\n".join(problems)


def test_comparison_catches_a_drifted_field() -> None:
    # The comparison itself must be able to fail: a renamed field, a changed
    # bound and a changed default are each reported.
    kind = KINDS[2]
    crd_schema = openapi_schema(kind)["properties"]["spec"]
    model_schema = kind.spec.model_json_schema(by_alias=True)
    drifted = {**crd_schema, "properties": {**crd_schema["properties"]}}
    traffic = drifted["properties"]["traffic"]
    drifted["properties"]["traffic"] = {
        **traffic,
        "properties": {
            **traffic["properties"],
            "weight": {**traffic["properties"]["weight"], "maximum": 90, "default": 5},
        },
    }
    drifted["properties"]["challengr"] = drifted["properties"].pop("challenger")
    problems = "\n".join(compare(drifted, model_schema, model_schema["$defs"], "spec"))
    assert "only in CRD ['challengr']" in problems
    assert "spec.traffic.weight: numeric bounds differ" in problems
    assert "spec.traffic.weight: default differs" in problems


def test_a_misspelt_status_field_a_handler_writes_is_caught() -> None:
    # The handler tests' FakeKube refuses a status write the API server would prune.
    from fake_kube import unknown_fields

    assert unknown_fields("abexperiments", {"phase": "Progressing", "weights": {"challenger": 10}}) == []
    assert unknown_fields("abexperiments", {"startTme": "2026-01-01T00:00:00Z"}) == ["status.startTme"]
    assert unknown_fields("abexperiments", {"statistic": {"pvalue": 0.1}}) == ["status.statistic.pvalue"]
    assert unknown_fields("modelversions", {"history": [{"action": "Promoted", "triggerBy": "x"}]}) == [
        "status.history[0].triggerBy"
    ]
