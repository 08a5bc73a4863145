"""kopf glue: translate Kubernetes events into ``relearn.core`` decisions and
write the outcome back to status and Events. One module per concern; all are
wired into one registry by :func:`build_registry`, which ``relearn run`` uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from relearn.core.sharding import ALL, Shard
from relearn.handlers import drift, experiments, lookups, spec, startup


def owned_by(shard: Shard) -> Callable[..., bool] | None:
    """The ``when`` filter of a shard's handlers: only the objects it owns
    (:mod:`relearn.core.sharding`); None for the one shard of one."""
    if shard.count == 1:
        return None

    def owns(*, name: str, namespace: str | None, **_: Any) -> bool:
        return shard.owns(namespace or "", name)

    return owns


def build_registry(shard: Shard = ALL) -> kopf.OperatorRegistry:
    """A registry holding every Relearn handler (no import-time side effects).
    A shard acts on its own objects only; its indexes hold every object, since
    a check reads the model's other objects whichever shard owns them."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(kopf.login_via_client)
    when = owned_by(shard)
    startup.register(registry)
    lookups.register(registry)
    spec.register(registry, when)
    drift.register(registry, when)
    experiments.register(registry, when)
    return registry
