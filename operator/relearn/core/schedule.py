"""When a daemon's next check is due: checks spread over their interval
(jitter) and a period that stays the interval however long a check took.

Each object has a phase in ``[0, interval)`` derived from a hash of its key
(its uid), so objects created together do not check in lock-step; its checks
are due at ``phase + k * interval`` on the daemon's clock. The first check
runs at once (a new object gets its first status without waiting); the next
is the first slot at least half an interval later, and every one after that
one interval after the previous slot, skipping slots a slow check missed
rather than bunching them. Pure: the clock's reading is passed in. Used by
the DriftPolicy daemon (:mod:`relearn.handlers.drift`) and the ABExperiment
daemon's Progressing looks (:mod:`relearn.handlers.experiments.daemon`).

:func:`backoff`: how long an experiment waiting on something a person has to
fix (its Deployment, its Service) waits before it looks again.
"""

from __future__ import annotations

import hashlib
import math

from relearn.errors import InvalidSetting

__all__ = ["backoff", "next_due", "phase"]


def _checked_interval(interval: float) -> float:
    if not math.isfinite(interval) or interval <= 0:
        raise InvalidSetting(f"a check interval must be a positive number of seconds, not {interval!r}")
    return interval


def phase(key: str, interval: float) -> float:
    """The object's offset into its interval, uniform over ``[0, interval)``
    across keys, the same for the same key."""
    interval = _checked_interval(interval)
    fraction = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2.0**64
    return min(fraction * interval, math.nextafter(interval, 0.0))


def next_due(key: str, interval: float, now: float, previous: float | None = None) -> float:
    """The clock reading at which the next check is due, after one that was
    due at ``previous`` (None: the first check, run at ``now``) and finished
    at ``now``. Always later than ``now`` and on the object's slot grid."""
    interval = _checked_interval(interval)
    if not math.isfinite(now):
        raise InvalidSetting(f"the clock must read a finite number, not {now!r}")
    offset = phase(key, interval)
    earliest = now + interval / 2 if previous is None or not math.isfinite(previous) else previous + interval
    # The first slot at or after `earliest` that is still in the future.
    target = max(earliest, math.nextafter(now, math.inf))
    # The tolerance keeps a slot computed as previous + interval from being
    # taken for one just past it (float rounding) and skipped.
    slots = math.ceil((target - offset) / interval - 1e-6)
    due = offset + slots * interval
    while due <= now:  # rounding at huge clock readings
        due = math.nextafter(due + interval, math.inf)
    return due


def backoff(base: float, cap: float, repeats: int) -> float:
    """The wait before looking again at something still missing after
    ``repeats`` looks in a row found it missing: ``base`` doubling each time,
    at most ``cap`` (a thousand experiments waiting on Deployments that do
    not exist cost a look a minute each, not one every ``base`` seconds)."""
    base, cap = _checked_interval(base), _checked_interval(cap)
    if repeats < 0:
        raise InvalidSetting(f"repeats counts looks, it cannot be {repeats!r}")
    return min(max(base, cap), base * 2.0 ** min(repeats, 64))
