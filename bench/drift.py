"""Drift check cost for a wide model: 200 features x 20 buckets.

    .venv/bin/python bench/drift.py [--features 200] [--buckets 20] [--checks 5]

Relearn's check sends ONE PromQL query per window for all features
(`sum by (feature, le) (increase(...))`); the baseline sends one query per
feature, as a per-feature tool would. Both run against the same local stub of
the Prometheus HTTP API (aiohttp on 127.0.0.1, synthetic histograms), so the
numbers measure the operator's side: queries per check, wall time per check
and the drift computation itself. Bounded: a few checks each, then it stops.
Targets (issue 4): <= 2 queries and <= 200 ms compute per check.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time

import numpy as np
from aiohttp import web
from relearn.adapters.prometheus import PrometheusClient, Sample, arrange, label_matcher, window_query
from relearn.api.driftpolicy import DriftPolicySpec
from relearn.core.drift_policy import FeatureCounts, WindowData, assess, from_window
from relearn.core.promql import FEATURE_VALUE


def synthetic(features: int, buckets: int, seed: int = 5) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    return {f"f{i}": list(np.cumsum(rng.poisson(100, buckets)).astype(float)) for i in range(features)}


async def start_stub(data: dict[str, list[float]], edges: list[str]) -> tuple[web.AppRunner, str]:
    per_feature = re.compile(r'feature="(f\d+)"')

    def vector(names: list[str]) -> list[dict[str, object]]:
        return [
            {"metric": {"feature": name, "le": le}, "value": [0, str(count)]}
            for name in names
            for le, count in zip([*edges, "+Inf"], data[name], strict=True)
        ]

    async def query(request: web.Request) -> web.Response:
        promql = (await request.post())["query"]
        assert isinstance(promql, str)
        match = per_feature.search(promql)
        result = vector([match.group(1)] if match else list(data))
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": result}})

    app = web.Application()
    app.router.add_post("/api/v1/query", query)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def one_check(
    client: PrometheusClient, spec: DriftPolicySpec, reference: WindowData, batched: bool
) -> tuple[int, float, float]:
    labels = {"model": "wide", "version": "1.0.0"}
    before = client.queries_sent
    started = time.perf_counter()
    if batched:
        samples = await client.query(window_query(labels, "1h"))
    else:
        samples = []
        for feature in spec.features:
            selector = label_matcher({**labels, "feature": feature.name})
            answer = await client.query(f"sum by (le) (increase({FEATURE_VALUE}_bucket{selector}[1h]))")
            samples += [Sample({**s.labels, "feature": feature.name}, s.value) for s in answer]
    computing = time.perf_counter()
    assessment = assess(spec, reference, from_window(arrange(samples)))
    finished = time.perf_counter()
    assert len(assessment.features) == len(spec.features)
    return client.queries_sent - before, (finished - started) * 1000, (finished - computing) * 1000


async def main(features: int, buckets: int, checks: int) -> None:
    edges = [f"{e:.3f}" for e in np.linspace(-2, 2, buckets - 1)]
    data = synthetic(features, buckets)
    reference = WindowData(
        {
            name: FeatureCounts(
                "numeric", tuple(float(v) for v in np.diff(c, prepend=0.0)), tuple(float(e) for e in edges)
            )
            for name, c in data.items()
        }
    )
    spec = DriftPolicySpec.model_validate(
        {"model": "wide", "prometheus": {"url": "http://unused"}, "features": [{"name": name} for name in data]}
    )
    runner, url = await start_stub(data, edges)
    try:
        async with PrometheusClient(url) as client:
            results = {}
            for label, batched in (("one query per feature (baseline)", False), ("relearn, batched", True)):
                runs = [await one_check(client, spec, reference, batched) for _ in range(checks)]
                results[label] = (
                    runs[0][0],
                    statistics.median(r[1] for r in runs),
                    statistics.median(r[2] for r in runs),
                )
    finally:
        await runner.cleanup()
    print(f"{features} features x {buckets} buckets, median of {checks} checks")
    print(f"{'':34} {'queries':>8} {'wall ms':>9} {'compute ms':>11}")
    for label, (queries, wall, compute) in results.items():
        print(f"{label:34} {queries:8d} {wall:9.1f} {compute:11.1f}")
    base, ours = results["one query per feature (baseline)"], results["relearn, batched"]
    print(f"queries ratio baseline/relearn: {base[0] / ours[0]:.0f}x; wall ratio: {base[1] / ours[1]:.1f}x")
    print(
        f"targets: <= 2 queries ({'met' if ours[0] <= 2 else 'NOT met'}), "
        f"<= 200 ms compute ({'met' if ours[2] <= 200 else 'NOT met'})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=200)
    parser.add_argument("--buckets", type=int, default=20)
    parser.add_argument("--checks", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.features, args.buckets, args.checks))
