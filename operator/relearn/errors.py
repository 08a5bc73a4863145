"""The typed errors of Relearn's decision core, shared by every layer.

The decision functions in `relearn.core` are total: for any input they return
a verdict or raise one `DecisionError`. Its `reason` is the CamelCase word a
handler writes into a status condition (and an Event) so that a user reads
why no decision was taken; its message carries the numbers. Handlers catch
`DecisionError` and never decide on the data that raised it.
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
