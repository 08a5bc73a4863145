"""The CRDs are structural, answer "what is happening" in kubectl get, and
ship identically in crds/, the chart and the package."""

from __future__ import annotations

import filecmp
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from relearn.api import KINDS, Kind
from relearn.api.schema import all_crds_yaml, load_crd, openapi_schema

REPO = Path(__file__).resolve().parents[2]


def untyped_nodes(node: dict[str, Any], path: str) -> Iterator[str]:
    """Paths of schema nodes that are neither typed nor explicitly open."""
    if not (
        node.get("type") or node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    ):
        yield path
    for name, sub in node.get("properties", {}).items():
        yield from untyped_nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from untyped_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from untyped_nodes(node["additionalProperties"], f"{path}.*")


def all_crd_documents() -> list[dict[str, Any]]:
    return [doc for path in sorted((REPO / "crds").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())]


@pytest.mark.parametrize("crd", all_crd_documents(), ids=lambda c: c["metadata"]["name"])
def test_every_schema_node_is_typed(crd: dict[str, Any]) -> None:
    for version in crd["spec"]["versions"]:
        schema = version["schema"]["openAPIV3Schema"]
        assert list(untyped_nodes(schema, "")) == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_names_status_subresource_and_conditions(kind: Kind) -> None:
    crd = load_crd(kind)
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        kind.kind,
        kind.plural,
        [kind.short_name],
        ["relearn"],
    )
    (version,) = crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    conditions = openapi_schema(kind)["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }


def resolve_json_path(schema: dict[str, Any], json_path: str) -> dict[str, Any]:
    node = schema
    for part in re.sub(r"\[\?\(.*?\)\]", "", json_path).lstrip(".").split("."):
        if node.get("type") == "array":
            node = node["items"]
        node = node["properties"][part]
    return node


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_printer_columns_point_at_schema_fields_of_their_type(kind: Kind) -> None:
    (version,) = load_crd(kind)["spec"]["versions"]
    schema = openapi_schema(kind)
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path == ".metadata.creationTimestamp":
            continue
        node = resolve_json_path(schema, path)
        expected = {"date": "string", "integer": "integer", "number": "number", "string": "string"}[column["type"]]
        assert node["type"] == expected, f"{column['name']} ({path})"


EXPECTED_COLUMNS = {
    "ModelVersion": ["Model", "Version", "Phase"],
    "DriftPolicy": ["Model", "Drifted", "Last-Check"],
    "ABExperiment": ["Champion", "Challenger", "Weight", "Samples", "Decision"],
}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_printer_columns_answer_what_is_happening(kind: Kind) -> None:
    (version,) = load_crd(kind)["spec"]["versions"]
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert all(name in names for name in EXPECTED_COLUMNS[kind.kind]), names


def test_chart_ships_the_same_crds() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (REPO / "charts/relearn/crds").glob("*.yaml"))
    assert top == chart
    _, mismatch, errors = filecmp.cmpfiles(REPO / "crds", REPO / "charts/relearn/crds", top, shallow=False)
    assert (mismatch, errors) == ([], []), "run `make crds` to copy crds/ into the chart"


def test_relearn_crds_prints_every_relearn_crd() -> None:
    docs = list(yaml.safe_load_all(all_crds_yaml()))
    assert [d["spec"]["names"]["kind"] for d in docs] == [k.kind for k in KINDS]
