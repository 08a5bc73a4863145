"""Durations as written in Relearn CRs: Go-style (``90s``, ``1h30m``,
``250ms``) plus days (``7d``), since retraining windows and cooldowns are
naturally said in days. The pattern is the CRD's; this turns it into time.
"""

from __future__ import annotations

import datetime
import re

from relearn.api.base import duration_seconds

# Any length: the CRDs bound what a user writes; this also reads computed durations.
_WHOLE = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$")


def parse_duration(text: str) -> datetime.timedelta:
    """``"1h30m"`` -> 90 minutes. Raises ``ValueError`` naming the bad text."""
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m, 7d")
    return datetime.timedelta(seconds=duration_seconds(text))


def format_duration(delta: datetime.timedelta) -> str:
    """The shortest CR-style text for a duration, to whole seconds (``1h30m``)."""
    total = round(delta.total_seconds())
    if total <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, total = divmod(total, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
