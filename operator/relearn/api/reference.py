"""The CRD reference (``docs/reference.md``), generated from ``crds/``.

    python -m relearn.api.reference > docs/reference.md     (make docs)

One section per kind: what it is, its printer columns, then every field of
spec and status with its type, default, constraints and description, in
schema order. ``tests/unit/test_reference.py`` fails when the file is stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from relearn.api import KINDS, Kind
from relearn.api.schema import load_crd, openapi_schema

HEADER = """# CRD reference

Generated from `crds/` by `python -m relearn.api.reference` (`make docs`);
do not edit by hand. Group `relearn.dev`, version `v1alpha1`. Durations are
written like `90s`, `1h30m` or `7d`; versions are semantic versions.
"""


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "any")
    if kind == "array":
        return f"[]{_type(node.get('items') or {})}"
    if node.get("format") == "date-time":
        return "timestamp"
    if node.get("x-kubernetes-int-or-string"):
        return "int or string"
    return str(kind)


def _constraints(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, label in (("minimum", ">="), ("maximum", "<=")):
        if key in node:
            exclusive = node.get(f"exclusive{key.capitalize()}")
            parts.append(f"{label.replace('=', '') if exclusive else label} {node[key]}")
    for key, label in (("minLength", "min length"), ("maxLength", "max length"), ("maxItems", "max items")):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node and "enum" not in node:
        parts.append(f"pattern `{node['pattern']}`")
    for rule in node.get("x-kubernetes-validations") or ():
        parts.append(f"rule: {rule.get('message', rule['rule'])}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fields(node: dict[str, Any], path: str, required: set[str]) -> Iterator[str]:
    for name, child in (node.get("properties") or {}).items():
        here = f"{path}.{name}" if path else name
        default = f"`{child['default']}`" if "default" in child and child["default"] != {} else ""
        flag = " (required)" if name in required else ""
        yield (
            f"| `{here}`{flag} | {_type(child)} | {_cell(default)} | {_cell(_constraints(child))} | "
            f"{_cell(child.get('description', ''))} |"
        )
        target = child.get("items") if child.get("type") == "array" else child
        if target and target.get("properties"):
            suffix = "[]" if child.get("type") == "array" else ""
            yield from _fields(target, here + suffix, set(target.get("required") or ()))


def section(kind: Kind) -> str:
    crd = load_crd(kind)
    schema = openapi_schema(kind)
    names = crd["spec"]["names"]
    (version,) = crd["spec"]["versions"]
    lines = [
        f"## {kind.kind}",
        "",
        _cell(schema.get("description", "")),
        "",
        f"`kubectl get {names['plural']}` (short: {', '.join(f'`{n}`' for n in names.get('shortNames', []))}) shows: "
        + ", ".join(c["name"] for c in version.get("additionalPrinterColumns") or ()),
        "",
    ]
    for part in ("spec", "status"):
        node = schema["properties"].get(part)
        if not node:
            continue
        lines += [f"### {kind.kind} {part}", ""]
        rules = [r.get("message", r["rule"]) for r in node.get("x-kubernetes-validations") or ()]
        if rules:
            lines += [
                "Rules across fields: "
                + "; ".join(
                    f"{_cell(r)} (`{_cell(rule['rule'])}`)"
                    for r, rule in zip(rules, node["x-kubernetes-validations"], strict=True)
                ),
                "",
            ]
        lines += ["| field | type | default | constraints | description |"]
        lines += ["|---|---|---|---|---|"]
        lines += list(_fields(node, "", set(node.get("required") or ())))
        lines.append("")
    return "\n".join(lines)


def render() -> str:
    return HEADER + "\n" + "\n".join(section(kind) for kind in KINDS)


if __name__ == "__main__":
    print(render(), end="")
