"""Relearn's one error vocabulary, shared by every layer: every error of
Relearn's own is a :class:`RelearnError`, with a condition ``reason`` (the
CamelCase word a handler writes into a status condition and an Event) and a
readable ``message`` that carries the numbers.

- :class:`DecisionError` (``InvalidMetrics``, ``NotEnoughData``,
  ``InvalidSetting``): the decision functions in `relearn.core` are total: for
  any input they return a verdict or raise one of these. Handlers catch it and
  never decide on the data that raised it.
- :class:`RollbackRefused`: a rollback asked for that may not happen
  (:mod:`relearn.core.rollback`).
- :class:`KubernetesError`: a Kubernetes API call failed, as
  :mod:`relearn.adapters.kube` translates the client's exceptions (the one
  place that sees them): :class:`APIUnreachable` (retry within seconds) or an
  :class:`APIError` the API answered (:class:`NotFound`, :class:`Conflict`,
  :class:`Forbidden`, :class:`Invalid`).
- Elsewhere, subclasses for one concern each: ``adapters.prometheus.PrometheusError``,
  ``adapters.routers.RouterError``, ``core.consent.UseRefused``, the
  experiment handler's ``Wait`` and the drift handler's ``CheckFailed``.
"""

from __future__ import annotations


class RelearnError(Exception):
    """Base of Relearn's own errors: a condition `reason` and a readable message."""

    reason: str = "Error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class DecisionError(RelearnError):
    """The decision core refused its input: no verdict may be drawn from it."""

    reason = "InvalidInput"


class InvalidMetrics(DecisionError):
    """Counts or samples that cannot be real: negative, NaN, infinite, successes above trials, bad layouts."""

    reason = "InvalidMetrics"


class NotEnoughData(DecisionError):
    """Valid data, but too little of it to decide anything (a single bucket, an empty window)."""

    reason = "NotEnoughData"


class InvalidSetting(DecisionError):
    """A setting outside what the decision can honour (it passed admission, e.g. an old object)."""

    reason = "InvalidSetting"


class RollbackRefused(RelearnError):
    """A rollback asked for that may not happen (no target, or one that failed its own checks)."""

    reason = "RollbackRefused"


# -- the Kubernetes API, as adapters.kube translates its client's errors ---------------------


class KubernetesError(RelearnError):
    """A Kubernetes API call failed; ``status`` is its HTTP status (None: no
    answer). Raised only by :mod:`relearn.adapters.kube`, so no other module
    depends on the client library's exception types."""

    reason = "KubernetesAPIError"

    def __init__(self, message: str, *, status: int | None = None, http_reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.http_reason = http_reason  # the API's reason phrase ("Not Found"), for messages


class APIUnreachable(KubernetesError):
    """The Kubernetes API did not answer (transport error, timeout, or a 50x
    while it restarts); the call may be retried within seconds."""

    reason = "APIUnreachable"


class APIError(KubernetesError):
    """The Kubernetes API answered with an error. The message names status
    and reason only: the body of an API error may quote the request."""


class NotFound(APIError):
    """404: the object (or its kind) does not exist."""


class Conflict(APIError):
    """409: the object exists already, or changed since it was read."""


class Forbidden(APIError):
    """401/403: the operator's service account may not do this."""


class Invalid(APIError):
    """400/422: the API server refused the object as written."""
