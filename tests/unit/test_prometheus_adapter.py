"""The Prometheus client: one batched query, retries on outages but not on
bad queries, credentials, and no PromQL injection from CR values."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from relearn.adapters.prometheus import (
    PrometheusAuth,
    PrometheusClient,
    PrometheusError,
    Sample,
    arrange,
    label_matcher,
    promql_string,
    render,
    scope,
    window_query,
)
from relearn.api.base import PrometheusSource


class Stub:
    """A Prometheus HTTP API that answers from a script and records requests."""

    def __init__(self, answers: list[tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"path": request.path, "form": form, "auth": request.headers.get("Authorization")})
        status, body = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return web.json_response(body, status=status)


@pytest.fixture
async def stub(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Stub, str]]:
    fake = Stub(request.param)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield fake, str(server.make_url("")).rstrip("/")
    await server.close()


VECTOR = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {"feature": "x", "le": "+Inf"}, "value": [1, "12.5"]}]},
}


@pytest.mark.parametrize("stub", [[(503, {"status": "error", "error": "busy"}), (200, VECTOR)]], indirect=True)
async def test_retries_a_server_error_then_answers(stub: tuple[Stub, str]) -> None:
    fake, url = stub
    async with PrometheusClient(url, backoff=0.01, auth=PrometheusAuth(bearer_token="s3cret")) as client:
        (sample,) = await client.query("up")
    assert sample.value == 12.5
    assert sample.labels == {"feature": "x", "le": "+Inf"}
    assert len(fake.requests) == 2
    assert fake.requests[0]["auth"] == "Bearer s3cret"
    assert "s3cret" not in repr(client.auth)


@pytest.mark.parametrize("stub", [[(400, {"status": "error", "error": "parse error"})]], indirect=True)
async def test_a_bad_query_is_not_retried(stub: tuple[Stub, str]) -> None:
    fake, url = stub
    async with PrometheusClient(url, backoff=0.01) as client:
        with pytest.raises(PrometheusError) as failure:
            await client.query("sum(")
    assert failure.value.reason == "BadQuery"
    assert len(fake.requests) == 1


MATRIX = {
    "status": "success",
    "data": {
        "resultType": "matrix",
        "result": [{"metric": {"outcome": "correct"}, "values": [[10, "1"], [20, "NaN"], [30, "3.5"]]}],
    },
}


@pytest.mark.parametrize("stub", [[(200, MATRIX)]], indirect=True)
async def test_range_queries_return_series(stub: tuple[Stub, str]) -> None:
    fake, url = stub
    async with PrometheusClient(url) as client:
        (series,) = await client.query_range("x", start=10, end=30, step=10)
    assert series.labels == {"outcome": "correct"}
    assert series.values[0] == (10.0, 1.0)
    assert math.isnan(series.values[1][1])  # no data stays no data
    assert series.values[2] == (30.0, 3.5)
    assert fake.requests[0]["path"] == "/api/v1/query_range"
    assert fake.requests[0]["form"]["step"] == "10"


async def test_an_unreachable_server_is_reported_after_retries() -> None:
    async with PrometheusClient("http://127.0.0.1:9", retries=2, backoff=0.01, timeout=1) as client:
        with pytest.raises(PrometheusError) as failure:
            await client.query("up")
    assert failure.value.reason == "Unreachable"
    assert client.queries_sent == 3


def test_one_query_covers_every_feature_and_the_feedback() -> None:
    query = window_query({"model": "invoice-classifier", "version": "1.0.0"}, "1h")
    assert query.count("increase(") == 3
    assert "sum by (feature, le) (increase(relearn_model_feature_value_bucket{" in query
    assert 'model="invoice-classifier",version="1.0.0"}[1h]' in query
    assert " offset " not in query
    assert "offset 7d" in window_query({"model": "m"}, "1h", offset="7d")


@pytest.mark.parametrize("value", ['x"} or vector(1) or {a="', "a b", "", "x\n", "a{b}"])
def test_cr_values_cannot_inject_promql(value: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        label_matcher({"model": value})


def test_user_queries_replace_a_feature_and_the_feedback() -> None:
    batched = [Sample({"feature": "x", "le": "+Inf"}, 5.0), Sample({"outcome": "correct"}, 1.0)]
    own = [Sample({"le": "1"}, 2.0), Sample({"le": "+Inf"}, 3.0)]
    counts = arrange(batched, overrides={"x": own}, feedback=(8.0, 10.0))
    assert counts.numeric == {"x": [(1.0, 2.0), (float("inf"), 3.0)]}
    assert counts.feedback == {"correct": 8.0, "incorrect": 2.0}
    query = render(
        'sum by (le) (rate(my_hist_bucket{app="{{model}}",v="{{version}}"}[{{window}}]))',
        {"model": "m", "version": "1.0.0"},
        "1h30m",
    )
    assert query == 'sum by (le) (rate(my_hist_bucket{app="m",v="1.0.0"}[1h30m]))'
    with pytest.raises(ValueError, match="not allowed"):
        render("{{model}}", {"model": 'x"}'}, "1h")


def test_string_literals_are_escaped() -> None:
    assert promql_string('a"b\\c') == '"a\\"b\\\\c"'


def test_every_query_selects_the_objects_namespace() -> None:
    labels = scope("team-a", None, model="ranker", version="1.1.0")
    assert label_matcher(labels) == '{model="ranker",version="1.1.0",namespace="team-a"}'
    assert 'namespace="team-a"' in window_query(labels, "1h")
    assert render("sum(x{ {{selector}} }[{{window}}])", labels, "5m") == (
        'sum(x{ model="ranker",version="1.1.0",namespace="team-a" }[5m])'
    )
    assert (
        render('x{model="{{model}}",namespace="{{namespace}}"}', labels, "5m") == 'x{model="ranker",namespace="team-a"}'
    )


def test_a_user_query_that_would_count_other_namespaces_is_refused() -> None:
    labels = scope("team-a", None, model="ranker", version="1.1.0")
    with pytest.raises(ValueError, match="does not select the namespace"):
        render('sum(x{model="{{model}}",version="{{version}}"})', labels, "5m")


def test_the_namespace_label_can_be_renamed_or_turned_off() -> None:
    renamed = PrometheusSource(url="http://p:9090", namespace_label="kubernetes_namespace")
    assert label_matcher(scope("team-a", renamed, model="m")) == '{model="m",kubernetes_namespace="team-a"}'
    off = PrometheusSource(url="http://p:9090", namespace_label="")
    labels = scope("team-a", off, model="m")
    assert label_matcher(labels) == '{model="m"}'
    assert render('x{model="{{model}}"}', labels, "5m") == 'x{model="m"}'
