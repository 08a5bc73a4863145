"""kopf glue: translate Kubernetes events into ``relearn.core`` decisions and
write the outcome back to status and Events. One module per concern; all are
wired into one registry by :func:`build_registry`, which ``relearn run`` uses.
"""

from __future__ import annotations

import kopf

from relearn.handlers import drift, experiments, lookups, spec, startup


def build_registry() -> kopf.OperatorRegistry:
    """A registry holding every Relearn handler (no import-time side effects)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    startup.register(registry)
    lookups.register(registry)
    spec.register(registry)
    drift.register(registry)
    experiments.register(registry)
    return registry
