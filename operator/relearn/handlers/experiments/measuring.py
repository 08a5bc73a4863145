"""Reading an experiment's numbers from Prometheus: both arms' feedback
counts and the guardrails for :mod:`.analysis`, a shadow stage's paired
counts (:func:`measure_pairs`), the requests each arm served since the last
weight change for its sample-ratio guard (:func:`requests_since`), and any
set of queries for the health checks of :mod:`.rollback` (:func:`read_values`).
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping, Sequence

from relearn.adapters.prometheus import PrometheusAuth, PrometheusClient, PrometheusError, auth_for, render, scope
from relearn.adapters.routers import Split
from relearn.api.base import PrometheusSource
from relearn.core import experiment as judging
from relearn.core import promql, srm, stats
from relearn.core.durations import parse_duration
from relearn.handlers.experiments.context import Context

EXTRAPOLATION_SLACK = 1.01  # successes above samples by up to 1 % (plus one) are clamped, not refused


async def _prometheus(ctx: Context) -> tuple[PrometheusSource, PrometheusAuth]:
    """Where the arms are read: spec.prometheus, else the operator's --prometheus-url."""
    source = ctx.spec.prometheus
    if source is None:
        if not ctx.prometheus_url:
            raise PrometheusError(
                "Unreachable", "no Prometheus: set spec.prometheus or the operator's --prometheus-url"
            )
        source = PrometheusSource(url=ctx.prometheus_url)
    read = lambda name: ctx.kube.read_secret(ctx.namespace, name, "prometheus")  # noqa: E731
    return source, await auth_for(source, read, ctx.allowed.prometheus_urls)


async def _value(prometheus: PrometheusClient, query: str) -> float | None:
    """One number from a query: the sum of its samples; None when there is no data."""
    samples = await prometheus.query(query)
    values = [s.value for s in samples if math.isfinite(s.value)]
    return sum(values) if values else None


async def read_values(
    ctx: Context, queries: Sequence[tuple[str, str, Mapping[str, str]]], window: str
) -> dict[str, float | None]:
    """Each ``(key, PromQL template, labels)`` rendered for ``window`` and read
    as one number (None: no data), through the experiment's Prometheus."""
    source, auth = await _prometheus(ctx)
    timeout = parse_duration(source.timeout).total_seconds()
    async with PrometheusClient(source.url, timeout=timeout, auth=auth) as prometheus:
        return {key: await _value(prometheus, render(query, labels, window)) for key, query, labels in queries}


def clamp_extrapolated(successes: float, samples: float) -> stats.Arm:
    """An arm's counts: ``increase()`` extrapolates each series on its own, so
    successes may exceed samples by a little, which is noise; more than that
    is a broken query, which the decision core refuses."""
    if samples < successes <= samples * EXTRAPOLATION_SLACK + 1:
        successes = samples
    return stats.Arm(successes, samples)


async def measure_pairs(ctx: Context, split: Split, since: datetime.datetime) -> judging.ShadowLook:
    """The shadow stage's paired counts since it began (``since``): labelled
    requests the challenger answered as a shadow of this champion, and the
    discordant ones."""
    elapsed = ctx.now - since
    window = f"{max(1, math.ceil(elapsed.total_seconds()))}s"
    labels = scope(
        ctx.namespace,
        ctx.spec.prometheus,
        model=ctx.spec.model,
        version=split.challenger.version,
        champion=split.champion.version,
    )
    queries: list[tuple[str, str, Mapping[str, str]]] = [
        ("pairs", promql.SHADOW_PAIRS, labels),
        ("champion_only", promql.SHADOW_CHAMPION_ONLY, labels),
        ("challenger_only", promql.SHADOW_CHALLENGER_ONLY, labels),
    ]
    values = await read_values(ctx, queries, window)
    pairs = values["pairs"] or 0.0
    b, c = values["champion_only"] or 0.0, values["challenger_only"] or 0.0
    # increase() extrapolates each series on its own: the discordant pairs may
    # exceed all pairs by a little, which is noise (as for an arm's successes)
    if pairs < b + c <= pairs * EXTRAPOLATION_SLACK + 1:
        pairs = b + c
    return judging.ShadowLook(stats.Pairs(pairs, b, c), elapsed)


async def measure(ctx: Context, split: Split) -> judging.Look:
    """Both arms and the guardrails over the time since the challenger took traffic."""
    assert ctx.status.start_time is not None
    elapsed = ctx.now - ctx.status.start_time
    window = f"{max(1, math.ceil(elapsed.total_seconds()))}s"
    analysis = ctx.spec.analysis
    arms = {"champion": split.champion.version, "challenger": split.challenger.version}
    queries: list[tuple[str, str, Mapping[str, str]]] = []
    for arm, version in arms.items():
        labels = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=version)
        queries += [
            (f"{arm}.successes", analysis.success_query or promql.FEEDBACK_CORRECT, labels),
            (f"{arm}.samples", analysis.total_query or promql.FEEDBACK_TOTAL, labels),
        ]
    challenger = scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=split.challenger.version)
    queries += [(f"guardrail.{g.name}", g.query, challenger) for g in analysis.guardrails or ()]
    values = await read_values(ctx, queries, window)

    def arm_of(arm: str) -> stats.Arm:
        return clamp_extrapolated(values[f"{arm}.successes"] or 0.0, values[f"{arm}.samples"] or 0.0)

    guardrails = [
        judging.GuardrailValue(g.name, values[f"guardrail.{g.name}"], g.max) for g in analysis.guardrails or ()
    ]
    return judging.Look(arm_of("champion"), arm_of("challenger"), guardrails, elapsed)


async def requests_since(ctx: Context, split: Split, since: datetime.datetime | None) -> tuple[float, float] | None:
    """Requests each arm (champion, challenger) served from
    :data:`relearn.core.srm.SETTLE_SECONDS` after ``since`` (the last weight
    change); None when there is nothing to count yet or no data."""
    if since is None:
        return None
    seconds = math.floor((ctx.now - since).total_seconds() - srm.SETTLE_SECONDS)
    if seconds < 1:
        return None
    queries: list[tuple[str, str, Mapping[str, str]]] = [
        (arm, promql.REQUESTS, scope(ctx.namespace, ctx.spec.prometheus, model=ctx.spec.model, version=version))
        for arm, version in (("champion", split.champion.version), ("challenger", split.challenger.version))
    ]
    values = await read_values(ctx, queries, f"{seconds}s")
    champion, challenger = values["champion"], values["challenger"]
    if champion is None and challenger is None:
        return None
    return champion or 0.0, challenger or 0.0
