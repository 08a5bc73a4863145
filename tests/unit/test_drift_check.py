"""One drift check of the handler against a stub Prometheus: counts that
cannot be real end the check without a drift decision, with the reason."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from relearn.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from relearn.handlers.drift import CheckFailed, check

NOW = datetime.datetime(2026, 12, 1, 12, 0, tzinfo=datetime.UTC)
CHAMPION = {
    "metadata": {"name": "m-1.0.0"},
    "spec": {
        "model": "m",
        "version": "1.0.0",
        "declaredChampion": True,
        "baseModel": {"uri": "/m"},
        "baseline": {"features": [{"name": "x", "type": "numeric", "edges": [0.0, 1.0], "counts": [400, 400, 200]}]},
    },
}


class Kube:
    async def list_model_versions(self, namespace: str, model: str) -> list[dict[str, Any]]:
        return [CHAMPION]

    async def get(self, resource: object, namespace: str, name: str) -> None:
        return None  # no champion record: the champion is the Champion phase


def vector(values: dict[str, float]) -> dict[str, Any]:
    result = [{"metric": {"feature": "x", "le": le}, "value": [0, str(v)]} for le, v in values.items()]
    return {"status": "success", "data": {"resultType": "vector", "result": result}}


@pytest.fixture
async def prometheus(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    async def answer(_: web.Request) -> web.Response:
        return web.json_response(vector(request.param))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


def spec(url: str) -> DriftPolicySpec:
    return DriftPolicySpec.model_validate(
        {"model": "m", "prometheus": {"url": url}, "features": [{"name": "x"}], "thresholds": {"minSamples": 100}}
    )


@pytest.mark.parametrize("prometheus", [{"0": 400.0, "1": -300.0, "+Inf": 1000.0}], indirect=True)
async def test_negative_counts_end_the_check_with_invalid_metrics_and_no_drift_decision(prometheus: str) -> None:
    with pytest.raises(CheckFailed) as failure:
        await check(Kube(), "p", "ns", "uid", spec(prometheus), DriftPolicyStatus(), NOW)  # type: ignore[arg-type]
    assert failure.value.reason == "InvalidMetrics"
    assert failure.value.event == "InvalidMetrics"
    assert "negative" in failure.value.message


@pytest.mark.parametrize("prometheus", [{"0": 40.0, "1": 80.0, "+Inf": 100.0}], indirect=True)
async def test_valid_counts_are_decided(prometheus: str) -> None:
    outcome = await check(Kube(), "p", "ns", "uid", spec(prometheus), DriftPolicyStatus(), NOW)  # type: ignore[arg-type]
    drifted = [c for c in outcome.conditions if c.type == "Drifted"]
    assert [c.status for c in drifted] == ["False"]
