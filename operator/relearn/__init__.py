"""Relearn: a Kubernetes operator that keeps production ML models learning.

Layers (see docs/architecture.md): ``api`` (the CRDs as pydantic models),
``core`` (pure decisions), ``adapters`` (outside systems), ``handlers``
(kopf glue), ``serving`` (the metric-contract SDK), ``sandbox`` (a local
control plane) and ``cli`` (the ``relearn`` command).
"""

__version__ = "0.1.0"
