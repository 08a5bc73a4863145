"""Offline validation of Relearn custom resources in YAML files, as
``relearn validate`` runs it in a GitOps repo's CI: the CRD schema and CEL
rules (what admission would say) and the operator's own spec check (what the
operator would say), for every document in the given files and folders.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relearn.api import API_VERSION, kind_named
from relearn.api.schema import validate_object
from relearn.core.spec_check import describe_validation_error


@dataclass(frozen=True)
class Verdict:
    source: str
    kind: str
    name: str
    errors: tuple[str, ...]

    @property
    def valid(self) -> bool:
        return not self.errors


def yaml_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def check_document(source: str, doc: dict[str, Any]) -> Verdict:
    kind_name = str(doc.get("kind"))
    name = str((doc.get("metadata") or {}).get("name", "<unnamed>"))
    errors = [str(e) for e in validate_object(doc)]
    if not errors:
        try:
            kind_named(kind_name).spec.model_validate(doc.get("spec") or {})
        except ValidationError as error:
            errors += describe_validation_error(error)
    return Verdict(source, kind_name, name, tuple(errors))


def validate_paths(paths: Iterable[Path]) -> list[Verdict]:
    """A verdict for every Relearn object found; other kinds are not ours to judge."""
    verdicts = []
    for file in yaml_files(paths):
        try:
            docs = [d for d in yaml.safe_load_all(file.read_text(encoding="utf-8")) if d]
        except yaml.YAMLError as error:
            verdicts.append(Verdict(str(file), "?", "?", (f"not valid YAML: {error}",)))
            continue
        for index, doc in enumerate(docs):
            if isinstance(doc, dict) and doc.get("apiVersion") == API_VERSION:
                verdicts.append(check_document(f"{file}#{index}", doc))
    return verdicts
