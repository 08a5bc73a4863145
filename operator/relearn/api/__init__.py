"""The custom resources as pydantic models, mirroring ``crds/*.yaml``.

:data:`KINDS` is the one table of Relearn's kinds: handlers register on it,
the CLI validates with it, and the parity test walks it against the CRDs.
"""

from __future__ import annotations

from dataclasses import dataclass

from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus
from relearn.api.base import SpecModel, StatusModel
from relearn.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from relearn.api.modelversion import ModelVersionSpec, ModelVersionStatus

GROUP = "relearn.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    kind: str
    plural: str
    short_name: str
    crd_file: str
    spec: type[SpecModel]
    status: type[StatusModel]


KINDS: tuple[Kind, ...] = (
    Kind("ModelVersion", "modelversions", "mv", "modelversion.yaml", ModelVersionSpec, ModelVersionStatus),
    Kind("DriftPolicy", "driftpolicies", "dp", "driftpolicy.yaml", DriftPolicySpec, DriftPolicyStatus),
    Kind("ABExperiment", "abexperiments", "abx", "abexperiment.yaml", ABExperimentSpec, ABExperimentStatus),
)


def kind_named(name: str) -> Kind:
    """The kind by its ``kind``, plural or short name (as kubectl accepts)."""
    for k in KINDS:
        if name in (k.kind, k.plural, k.short_name):
            return k
    raise KeyError(f"not a Relearn kind: {name!r}; known: {', '.join(k.kind for k in KINDS)}")


__all__ = ["API_VERSION", "GROUP", "KINDS", "VERSION", "Kind", "kind_named"]
