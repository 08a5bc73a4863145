"""``relearn status``: the registry at a glance, one row per model: its
champion, the challenger under test and the experiment's phase and weight,
the last decision with its numbers, the drift state and the last retraining.
Plain columns, as `kubectl get` prints them."""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from relearn.adapters.kube import Target
from relearn.api.abexperiment import TERMINAL_PHASES
from relearn.core import model_versions, report
from relearn.reporting.collect import Objects, read_objects

COLUMNS = ("model", "champion", "challenger", "last decision", "drift", "retraining")


def _age(moment: datetime.datetime | None, now: datetime.datetime) -> str:
    if moment is None:
        return ""
    seconds = max(0.0, (now - moment).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def _of(items: Sequence[Mapping[str, Any]], model: str) -> list[Mapping[str, Any]]:
    return [i for i in items if (i.get("spec") or {}).get("model") == model]


def rows(objects: Objects, models: Sequence[str], now: datetime.datetime) -> list[tuple[str, ...]]:
    """One row of :data:`COLUMNS` per model."""
    result: list[tuple[str, ...]] = []
    for model in models or report.models(objects.model_versions):
        champion = model_versions.champion(_of(objects.model_versions, model), objects.champions.get(model))
        since = report.timestamp(((champion or {}).get("status") or {}).get("championSince"))
        champion_text = f"{champion['spec'].get('version')} ({_age(since, now)})" if champion else "none"
        experiments = sorted(
            _of(objects.abexperiments, model),
            key=lambda x: report.timestamp((x.get("metadata") or {}).get("creationTimestamp")) or now,
        )
        running = [x for x in experiments if (x.get("status") or {}).get("phase") not in TERMINAL_PHASES]
        challenger = "—"
        if running:
            x = running[-1]
            status = x.get("status") or {}
            weight = (status.get("weights") or {}).get("challenger")
            challenger = f"{x['spec'].get('challenger')} {status.get('phase') or 'Pending'}" + (
                f" at {weight}%" if weight is not None else ""
            )
        decision_text = "—"
        if experiments:
            status = experiments[-1].get("status") or {}
            decision, statistic = status.get("decision") or {}, status.get("statistic") or {}
            if decision.get("outcome"):
                decision_text = f"{decision['outcome']} {decision.get('reason') or ''}".strip()
                if statistic.get("lift") is not None:
                    decision_text += f": lift {statistic['lift'] * 100:+.1f} pts"
                    if statistic.get("ciLower") is not None and statistic.get("ciUpper") is not None:
                        decision_text += f" [{statistic['ciLower'] * 100:+.1f}, {statistic['ciUpper'] * 100:+.1f}]"
        drift_text, retraining_text = "no DriftPolicy", "—"
        for policy in _of(objects.policies, model):
            status = policy.get("status") or {}
            drifted = [f.get("name") for f in status.get("features") or () if f.get("drifted")]
            checked = _age(report.timestamp(status.get("lastCheckTime")), now)
            drift_text = (f"drifted: {', '.join(map(str, drifted))}" if drifted else "no drift") + (
                f" (checked {checked})" if checked else " (not checked yet)"
            )
            last = status.get("lastRetraining") or {}
            if last.get("outcome"):
                retraining_text = f"{last['outcome']} {last.get('modelVersion') or last.get('job') or ''}".strip()
        result.append((model, champion_text, challenger, decision_text, drift_text, retraining_text))
    return result


def render(table: Sequence[tuple[str, ...]]) -> str:
    """Plain columns, as ``kubectl get`` prints them: each as wide as its
    widest cell, so no cell wraps (piped output included)."""
    widths = [max(len(str(r[i])) for r in [COLUMNS, *table]) for i in range(len(COLUMNS))]
    return "".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in [COLUMNS, *table]
    )


def table(target: Target, models: Sequence[str] = ()) -> str:
    now = datetime.datetime.now(datetime.UTC)
    objects = read_objects(target)
    if not objects.model_versions:
        return f"no ModelVersion in {target.namespace}\n"
    return render(rows(objects, models, now))
