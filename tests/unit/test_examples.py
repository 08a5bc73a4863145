"""The shipped examples are valid, and broken CRs are refused with the field
named — by the CRD schema (what admission says) and by the pydantic models
(what the operator says)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from relearn.api import API_VERSION, kind_named
from relearn.api.schema import validate_object
from relearn.core.spec_check import describe_validation_error

REPO = Path(__file__).resolve().parents[2]
BROKEN = REPO / "tests" / "fixtures" / "broken"


def relearn_documents(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(folder.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == API_VERSION:
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


EXAMPLES = relearn_documents(REPO / "examples")


def test_examples_declare_every_kind() -> None:
    assert {doc["kind"] for _, doc in EXAMPLES} == {"ModelVersion", "DriftPolicy", "ABExperiment"}


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_is_admitted_by_its_crd(name: str, doc: dict[str, Any]) -> None:
    assert validate_object(doc) == []


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[n for n, _ in EXAMPLES])
def test_example_parses_with_its_model(name: str, doc: dict[str, Any]) -> None:
    spec = kind_named(doc["kind"]).spec.model_validate(doc["spec"])
    # Round trip: what the operator would write back is what the user wrote.
    assert spec.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc["spec"]


@pytest.mark.parametrize(
    ("fixture", "field", "words"),
    [
        ("weight-150.yaml", "spec.traffic.weight", "100"),
        ("bad-semver.yaml", "spec.version", ""),
        ("wrong-type.yaml", "spec.trigger.consecutiveChecks", "integer"),
        ("challenger-is-champion.yaml", "spec.challenger", "differ from champion"),
    ],
)
def test_broken_cr_is_refused_by_schema_and_model_naming_the_field(fixture: str, field: str, words: str) -> None:
    doc = yaml.safe_load((BROKEN / fixture).read_text())

    schema_errors = [str(e) for e in validate_object(doc)]
    assert any(e.startswith(f"{field}:") and words in e for e in schema_errors), schema_errors

    with pytest.raises(ValidationError) as caught:
        kind_named(doc["kind"]).spec.model_validate(doc["spec"])
    model_errors = describe_validation_error(caught.value)
    assert any(e.startswith(f"{field}:") and words in e for e in model_errors), model_errors


def test_unknown_field_is_an_error_for_the_operator() -> None:
    # The API server prunes unknown fields silently; `relearn validate` and
    # the operator's models say so instead, catching typos in GitOps repos.
    doc = yaml.safe_load((REPO / "examples/invoice-classifier/abexperiment.yaml").read_text())
    doc["spec"]["trafic"] = {"weight": 20}
    with pytest.raises(ValidationError) as caught:
        kind_named("abx").spec.model_validate(doc["spec"])
    assert any(e.startswith("spec.trafic:") for e in describe_validation_error(caught.value))
