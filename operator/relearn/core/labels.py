"""Label values the operator writes (``relearn.dev/model``, ``/version``,
``/policy``, ``/experiment`` on Jobs, ModelVersions, ABExperiments and the
challenger's Deployment, pods and Service), valid on a real API server for
every spec-valid name and version.

A Kubernetes label value is at most 63 characters of ``[A-Za-z0-9-_.]``,
beginning and ending with a letter or digit; object names may have 253 and
semver build metadata has ``+``. :func:`label_value` keeps a valid value as
it is, turns ``+`` (and anything else not allowed) into ``_`` and shortens a
long one to 52 characters and a hash of the whole; :func:`labelled` gives
the labels and, for each value that had to change, an annotation of the
same key with the full value. Pure; used by ``relearn.core.jobs``,
``relearn.core.retraining``, ``relearn.core.workloads`` and the experiment
handler (which selects by these values).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

MAX_LENGTH = 63
_VALID = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_ALLOWED = re.compile(r"[^-A-Za-z0-9_.]")


def valid(value: str) -> bool:
    return len(value) <= MAX_LENGTH and bool(_VALID.fullmatch(value))


def label_value(value: str) -> str:
    """``value`` as a valid label value: itself when it is one, else a stable
    stand-in (``1.0.0+build.7`` -> ``1.0.0_build.7``; a long name -> its first
    52 characters, ``-`` and 10 hex digits of its hash)."""
    if valid(value):
        return value
    cleaned = _NOT_ALLOWED.sub("_", value)
    if valid(cleaned):
        return cleaned
    digest = hashlib.sha256(value.encode()).hexdigest()[:10]
    head = re.sub(r"^[^A-Za-z0-9]+", "", cleaned[:52]).rstrip("-_.")
    return f"{head}-{digest}" if head else digest


def labelled(values: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(labels, annotations): each value as a label value, and the full value
    as an annotation of the same key where the label had to differ."""
    labels = {key: label_value(value) for key, value in values.items()}
    return labels, {key: value for key, value in values.items() if labels[key] != value}
