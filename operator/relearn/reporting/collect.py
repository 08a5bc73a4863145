"""Reads what ``relearn report`` and ``relearn status`` show: the registry's
objects from the API server and the series over the period from Prometheus.

The objects go through :mod:`relearn.core.report`; the series are read in
one range query per series family (feedback per version, drift scores per
policy, weights per experiment, each experiment's two arms), never one per
point. Whatever cannot be read is said in the report's notes: a report with
a gap is more use than no report.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from kubernetes import client

from relearn.adapters.kube import Target
from relearn.adapters.prometheus import PrometheusAuth, PrometheusClient, PrometheusError, label_matcher, scope
from relearn.api import GROUP, VERSION
from relearn.api.abexperiment import ABExperimentSpec
from relearn.api.base import PrometheusSource
from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core import report, stats
from relearn.core.experiment import settings as experiment_settings
from relearn.core.promql import FEEDBACK
from relearn.errors import DecisionError
from relearn.metrics import DRIFT_SCORE_METRIC, EXPERIMENT_WEIGHT_METRIC

Points = list[tuple[float, float]]  # (unix seconds, value)
MAX_POINTS = 240  # per series: enough for a week at 45 min, a demo at 1 s


@dataclass(frozen=True)
class Objects:
    model_versions: list[dict[str, Any]]
    abexperiments: list[dict[str, Any]]
    policies: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    champions: dict[str, str] = field(default_factory=dict)  # model -> version its champion record names


@dataclass(frozen=True)
class LiftSequence:
    """An experiment's cumulative lift at each step with the bounds of its
    confidence sequence (the experiment's own test, at its own alpha)."""

    times: list[float]
    lift: list[float]
    lower: list[float]
    upper: list[float]
    champion_samples: list[float]
    challenger_samples: list[float]


@dataclass
class Series:
    accuracy: dict[str, Points] = field(default_factory=dict)  # version -> feedback accuracy
    drift: dict[str, dict[str, Points]] = field(default_factory=dict)  # policy -> feature -> PSI
    drift_thresholds: dict[str, float] = field(default_factory=dict)  # policy -> PSI threshold
    weights: dict[str, Points] = field(default_factory=dict)  # experiment -> challenger %
    lift: dict[str, LiftSequence] = field(default_factory=dict)  # experiment -> lift sequence
    step: float = 0.0
    window: float = 0.0


def read_objects(target: Target) -> Objects:
    """Every ModelVersion, ABExperiment and DriftPolicy of the namespace, its
    retraining Jobs (those the operator labels with a model) and its models'
    champion records."""

    def custom(plural: str) -> list[dict[str, Any]]:
        listed = target.custom.list_namespaced_custom_object(GROUP, VERSION, target.namespace, plural)
        return list(listed.get("items") or [])

    batch = client.BatchV1Api(target.custom.api_client)
    jobs = batch.list_namespaced_job(target.namespace, label_selector="relearn.dev/model", _preload_content=False)
    return Objects(
        model_versions=custom("modelversions"),
        abexperiments=custom("abexperiments"),
        policies=custom("driftpolicies"),
        jobs=list(json.loads(jobs.data).get("items") or []),
        champions=target.champion_records(),
    )


def period(objects: Objects, model: str, since: datetime.timedelta, now: datetime.datetime) -> datetime.datetime:
    """The report's start: ``since`` ago, or the model's first trace (a
    ModelVersion created, a history entry) when that is later."""
    moments = []
    for obj in objects.model_versions:
        if (obj.get("spec") or {}).get("model") != model:
            continue
        moments.append(report.timestamp((obj.get("metadata") or {}).get("creationTimestamp")))
        history = (obj.get("status") or {}).get("history")
        moments += [report.timestamp(e.get("time")) for e in history or () if isinstance(e, dict)]
    return max(now - since, min((m for m in moments if m is not None), default=now - since))


def steps(start: datetime.datetime, end: datetime.datetime, scrape: float = 30.0) -> tuple[float, float]:
    """Step and rate window of the range queries: at most MAX_POINTS points;
    the window covers at least four scrapes (``scrape``: Prometheus' scrape
    interval, in seconds), so a rate has samples to stand on."""
    span = max((end - start).total_seconds(), 1.0)
    step = max(math.ceil(span / MAX_POINTS), 1.0)
    return step, max(step, 4 * scrape, 15.0)  # 15 s at least: a rate over fewer requests is noise


def _duration(seconds: float) -> str:
    return f"{max(1, round(seconds))}s"


def _by(series: Sequence[Any], label: str) -> dict[str, Points]:
    result: dict[str, Points] = {}
    for item in series:
        key = item.labels.get(label)
        if key is not None:
            result[key] = [(t, v) for t, v in item.values if math.isfinite(v)]
    return result


def _policy_source(policies: Sequence[Mapping[str, Any]], model: str) -> tuple[str | None, DriftPolicySpec | None]:
    for policy in policies:
        try:
            spec = DriftPolicySpec.model_validate(policy.get("spec") or {})
        except ValueError:
            continue
        if spec.model == model:
            return (policy.get("metadata") or {}).get("name"), spec
    return None, None


def prometheus_url(objects: Objects, model: str) -> str | None:
    """The Prometheus the model's DriftPolicy reads (the report reads the same)."""
    _, spec = _policy_source(objects.policies, model)
    return spec.prometheus.url if spec is not None and spec.prometheus is not None else None


async def read_series(
    prometheus: PrometheusClient,
    objects: Objects,
    model: str,
    namespace: str,
    start: datetime.datetime,
    end: datetime.datetime,
    notes: list[str],
    scrape: float = 30.0,
) -> Series:
    step, window = steps(start, end, scrape)
    result = Series(step=step, window=window)
    t0, t1 = start.timestamp(), end.timestamp()
    name, policy = _policy_source(objects.policies, model)
    labels = scope(namespace, policy.prometheus if policy else None, model=model)
    selector = label_matcher(labels)[1:-1]
    w = _duration(window)
    try:
        correct = await prometheus.query_range(
            f'sum by (version) (increase({FEEDBACK}_total{{{selector},outcome="correct"}}[{w}]))', t0, t1, step
        )
        total = await prometheus.query_range(
            f"sum by (version) (increase({FEEDBACK}_total{{{selector}}}[{w}]))", t0, t1, step
        )
    except PrometheusError as error:
        notes.append(f"accuracy over time: {error.message}")
        if error.reason in ("Unreachable", "Timeout", "Unauthorized"):
            return result  # the other queries would only say the same, after as many retries
    else:
        totals = _by(total, "version")
        for version, points in _by(correct, "version").items():
            denominators = dict(totals.get(version, []))
            result.accuracy[version] = [(t, c / n) for t, c in points if (n := denominators.get(t, 0.0)) > 0]
        if not result.accuracy:
            notes.append("accuracy over time: Prometheus has no feedback for this model in the period")
    if name is not None and policy is not None:
        result.drift_thresholds[name] = policy.thresholds.psi
        matcher = label_matcher({"namespace": namespace, "policy": name, "score": "psi"})
        try:
            drift = await prometheus.query_range(f"{DRIFT_SCORE_METRIC}{matcher}", t0, t1, step)
        except PrometheusError as error:
            notes.append(f"drift over time: {error.message}")
        else:
            result.drift[name] = _by(drift, "feature")
            if not result.drift[name]:
                notes.append(
                    "drift over time: Prometheus has no relearn_drift_score series; "
                    "scrape the operator's metrics port (the chart's metrics Service) to keep them"
                )
    for abx in objects.abexperiments:
        await _experiment(prometheus, abx, model, namespace, policy, start, end, result, notes)
    return result


async def _experiment(
    prometheus: PrometheusClient,
    abx: Mapping[str, Any],
    model: str,
    namespace: str,
    policy: DriftPolicySpec | None,
    start: datetime.datetime,
    end: datetime.datetime,
    result: Series,
    notes: list[str],
) -> None:
    name = str((abx.get("metadata") or {}).get("name"))
    if (abx.get("spec") or {}).get("model") != model:
        return
    try:
        spec = ABExperimentSpec.model_validate(abx.get("spec") or {})
    except ValueError:
        notes.append(f"experiment {name}: its spec cannot be read; left out of the plots")
        return
    if spec.model != model:
        return
    status = abx.get("status") or {}
    began = report.timestamp(status.get("startTime")) or report.timestamp(
        (abx.get("metadata") or {}).get("creationTimestamp")
    )
    if began is None or began > end:
        return
    ended = report.timestamp(status.get("promotionTime")) or end
    lo, hi = max(began, start), max(min(ended, end), max(began, start))
    step = max(math.ceil(max((hi - lo).total_seconds(), 1.0) / MAX_POINTS), 1.0)
    matcher = label_matcher({"namespace": namespace, "experiment": name})
    try:
        weights = await prometheus.query_range(
            f"{EXPERIMENT_WEIGHT_METRIC}{matcher}", lo.timestamp(), hi.timestamp(), step
        )
    except PrometheusError as error:
        notes.append(f"experiment {name} weights: {error.message}")
    else:
        if weights:
            result.weights[name] = [(t, v) for t, v in weights[0].values if math.isfinite(v)]
    champion = spec.champion or status.get("champion")
    if champion:
        source = spec.prometheus or (policy.prometheus if policy else None)
        grid = np.arange(lo.timestamp(), hi.timestamp() + step / 2, step)
        await _lift(prometheus, name, spec, str(champion), source, namespace, grid, step, result, notes)


async def _lift(
    prometheus: PrometheusClient,
    name: str,
    spec: ABExperimentSpec,
    champion: str,
    source: PrometheusSource | None,
    namespace: str,
    grid: np.ndarray,
    step: float,
    result: Series,
    notes: list[str],
) -> None:
    """The experiment's cumulative lift at each time of ``grid`` with its bounds."""
    counts: dict[tuple[str, str], np.ndarray] = {}
    for arm, version in (("champion", champion), ("challenger", spec.challenger)):
        # The raw counters, one series per pod and outcome: their increase since
        # the experiment began, resets counted as Prometheus' increase() does,
        # without its extrapolation (a short experiment has few scrapes).
        query = f"{FEEDBACK}_total{label_matcher(scope(namespace, source, model=spec.model, version=version))}"
        try:
            answer = await prometheus.query_range(query, float(grid[0]), float(grid[-1]), step)
        except PrometheusError as error:
            notes.append(f"experiment {name} lift: {error.message}")
            return
        correct = [s.values for s in answer if s.labels.get("outcome") == "correct"]
        counts[arm, "successes"] = counted_since(correct, grid)
        counts[arm, "samples"] = counted_since([s.values for s in answer], grid)
    times = [float(t) for t in grid]
    sa, na = counts["champion", "successes"], counts["champion", "samples"]
    sb, nb = counts["challenger", "successes"], counts["challenger", "samples"]
    usable = (na > 0) & (nb > 0)
    if not usable.any():
        return
    try:
        evaluation = stats.evaluate(sa[usable], na[usable], sb[usable], nb[usable], experiment_settings(spec))
    except DecisionError as error:
        notes.append(f"experiment {name} lift: {error.message}")
        return
    kept = [t for t, ok in zip(times, usable, strict=True) if ok]
    result.lift[name] = LiftSequence(
        times=kept,
        lift=[float(x) for x in evaluation.lift],
        lower=[float(x) for x in evaluation.lower],
        upper=[float(x) for x in evaluation.upper],
        champion_samples=[float(x) for x in na[usable]],
        challenger_samples=[float(x) for x in nb[usable]],
    )


def counted_since(series: Sequence[Sequence[tuple[float, float]]], grid: np.ndarray) -> np.ndarray:
    """Summed increase of counters at each time of ``grid`` since its first:
    a counter seen at the start counts from its value then, one that appears
    later (a new pod) from zero; a drop is a restart, after which it counts
    from zero again."""
    total = np.zeros(grid.size)
    for values in series:
        points = {round(t, 3): v for t, v in values if math.isfinite(v)}
        if not points:
            continue
        seen = min(points)
        base = points[seen] if seen <= round(float(grid[0]), 3) else 0.0
        increase, previous = 0.0, base
        running = np.zeros(grid.size)
        for i, t in enumerate(grid):
            value = points.get(round(float(t), 3))
            if value is not None:
                increase += value - previous if value >= previous else value
                previous = value
            running[i] = increase
        total += running
    return total


def client_for(url: str, token: str | None) -> PrometheusClient:
    return PrometheusClient(url, auth=PrometheusAuth(bearer_token=token) if token else None)
