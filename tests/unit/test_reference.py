"""docs/reference.md is what the CRDs say: regenerate it (make docs) when a CRD changes."""

from __future__ import annotations

from pathlib import Path

from relearn.api import reference


def test_crd_reference_is_current(repo: Path) -> None:
    written = (repo / "docs" / "reference.md").read_text()
    assert written == reference.render(), "docs/reference.md is stale: run `make docs` and commit it"


def test_reference_names_every_field_with_its_description() -> None:
    text = reference.render()
    assert "| `analysis.method` | string | `sequential` | one of `sequential`, `fixed` |" in text
    assert "Rules across fields: challenger must differ from champion" in text
    assert "`kubectl get abexperiments` (short: `abx`) shows: Model, Champion, Challenger, Weight" in text
