"""An async client of the Prometheus HTTP API, and the PromQL Relearn sends.

- :class:`PrometheusClient`: instant and range queries with a timeout,
  retries with exponential backoff on connection errors, timeouts and 5xx
  (never on a bad query), bearer or basic auth, and TLS options.
- :func:`label_matcher` and :func:`promql_string`: every label value that
  comes from a custom resource is checked and quoted here, so a CR cannot
  inject PromQL.
- :class:`Scope` and :func:`scope`: the labels that select one model's
  series in one namespace: ``model``, ``version`` and the namespace label
  (``spec.prometheus.namespaceLabel``, ``namespace`` by default), so a model
  of the same name in another namespace is never counted. A user's query
  must select it too (``{{namespace}}`` or ``{{selector}}``); one that does
  not is refused before it is sent.
- :func:`window_query`: ONE query for all features of a policy and its
  feedback counts over a window (numeric buckets ``by (feature, le)``,
  categories ``by (feature, category)``, feedback ``by (outcome)``), joined
  with ``or``.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp

from relearn.api.base import NAMESPACE_LABEL, PrometheusSource
from relearn.core import promql
from relearn.core.consent import UseRefused, check_prometheus_url
from relearn.core.drift_policy import WindowCounts
from relearn.core.durations import format_duration, parse_duration
from relearn.errors import RelearnError

LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:+-]{1,253}$")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

FailureReason = Literal[
    "Unreachable", "Timeout", "BadQuery", "ServerError", "Unauthorized", "BadResponse", "NotAllowed"
]


class PrometheusError(RelearnError):
    """A query that did not give an answer, and why (for MetricsAvailable=False)."""

    reason: FailureReason

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message, reason=reason)


def promql_string(value: str) -> str:
    """A PromQL string literal (double-quoted, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class Scope(dict[str, str]):
    """The labels a query selects, with the name of the one that carries the
    namespace (None: not scoped by namespace)."""

    namespace_label: str | None = None


def scope(namespace: str, source: PrometheusSource | None, **labels: str) -> Scope:
    """``model``/``version`` labels plus the namespace's, as ``source`` names it."""
    label = NAMESPACE_LABEL if source is None else source.namespace_label
    result = Scope(labels)
    if label:
        result[label] = namespace
        result.namespace_label = label
    return result


def label_matcher(labels: Mapping[str, str]) -> str:
    """``{model="m",version="1.0.0"}`` from values a CR supplied, refusing
    anything that is not a plain label value."""
    parts = []
    for name, value in labels.items():
        if not LABEL_VALUE.fullmatch(value):
            raise ValueError(f"label value {value!r} for {name} is not allowed in a query")
        parts.append(f"{name}={promql_string(value)}")
    return "{" + ",".join(parts) + "}"


def promql_duration(text: str) -> str:
    """A Relearn duration (``90s``, ``1h30m``, ``7d``) as a PromQL range."""
    if not DURATION.fullmatch(text):
        text = format_duration(parse_duration(text))
        if not DURATION.fullmatch(text):
            raise ValueError(f"duration {text!r} cannot be a PromQL range")
    return text


def window_query(labels: Mapping[str, str], window: str, offset: str | None = None, feedback: bool = True) -> str:
    """All of a policy's feature counts (and feedback) over one window, in one query."""
    selector = label_matcher(labels)
    shift = f" offset {promql_duration(offset)}" if offset else ""
    rng = f"[{promql_duration(window)}]{shift}"
    parts = [promql.WINDOW_FEATURE_BUCKETS, promql.WINDOW_FEATURE_CATEGORIES]
    if feedback:
        parts.append(promql.WINDOW_FEEDBACK)
    return " or ".join(p.format(selector=selector, range=rng) for p in parts)


def render(template: str, labels: Mapping[str, str], window: str) -> str:
    """A user's PromQL with ``{{model}}``, ``{{version}}``, ``{{namespace}}``,
    ``{{selector}}`` (every label of the scope: ``model="m",version="v",namespace="ns"``)
    and ``{{window}}`` filled in (values checked as in :func:`label_matcher`).
    With a :class:`Scope` that names a namespace label, a template that
    selects neither ``{{namespace}}`` nor ``{{selector}}`` is refused
    (ValueError): it would count other namespaces' series."""
    matcher = label_matcher(labels)
    namespace_label = getattr(labels, "namespace_label", None)
    if namespace_label and "{{namespace}}" not in template and "{{selector}}" not in template:
        raise ValueError(
            f"query {template[:200]!r} does not select the namespace: use {{{{selector}}}} "
            f'or {namespace_label}="{{{{namespace}}}}" in every selector'
        )
    text = template.replace("{{window}}", promql_duration(window))
    text = text.replace("{{selector}}", matcher[1:-1])
    text = text.replace("{{namespace}}", labels.get(namespace_label, "") if namespace_label else "")
    for name in ("model", "version"):
        text = text.replace("{{" + name + "}}", labels.get(name, ""))
    return text


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    values: list[tuple[float, float]]


@dataclass(frozen=True)
class PrometheusAuth:
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_pem: str | None = None
    insecure_skip_verify: bool = False

    def __repr__(self) -> str:  # never print credentials
        return f"PrometheusAuth(bearer={'***' if self.bearer_token else None}, user={self.username})"


async def auth_for(
    source: PrometheusSource,
    read_secret: Callable[[str], Awaitable[Mapping[str, str]]],
    allowed_urls: Sequence[str] = (),
) -> PrometheusAuth:
    """The credentials a CR's ``prometheus`` section names: bearer ``token`` or
    ``username``/``password`` from ``authSecretRef``, ``ca.crt`` from
    ``caSecretRef`` (``read_secret`` reads a Secret of the CR's namespace,
    which must allow the use ``prometheus``). A URL outside ``allowed_urls``
    or a Secret without consent: ``PrometheusError("NotAllowed")``, before
    any Secret is read or any query sent."""
    values: Mapping[str, str] = {}
    ca_pem = None
    try:
        check_prometheus_url(source.url, allowed_urls)
        if source.auth_secret_ref:
            values = await read_secret(source.auth_secret_ref.name)
        if source.ca_secret_ref:
            ca_pem = (await read_secret(source.ca_secret_ref.name)).get("ca.crt")
    except UseRefused as refused:
        raise PrometheusError("NotAllowed", refused.message) from None
    return PrometheusAuth(
        bearer_token=values.get("token"),
        username=values.get("username"),
        password=values.get("password"),
        ca_pem=ca_pem,
        insecure_skip_verify=source.insecure_skip_verify,
    )


class PrometheusClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        auth: PrometheusAuth | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.auth = auth or PrometheusAuth()
        self.queries_sent = 0
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> PrometheusClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.auth.insecure_skip_verify:
            return False
        if self.auth.ca_pem:
            return ssl.create_default_context(cadata=self.auth.ca_pem)
        return True

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {}
            if self.auth.bearer_token:
                headers["Authorization"] = f"Bearer {self.auth.bearer_token}"
            basic = aiohttp.BasicAuth(self.auth.username, self.auth.password or "") if self.auth.username else None
            self._session = aiohttp.ClientSession(
                headers=headers,
                auth=basic,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(ssl=self._ssl()),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        last: PrometheusError | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            self.queries_sent += 1
            try:
                async with self._open().post(f"{self.url}{path}", data=dict(params)) as response:
                    body = await response.json(content_type=None)
                    if response.status in (401, 403):
                        raise PrometheusError("Unauthorized", f"Prometheus refused the credentials ({response.status})")
                    if response.status in (400, 422):
                        raise PrometheusError("BadQuery", f"Prometheus rejected the query: {body.get('error')}")
                    if response.status >= 500:
                        last = PrometheusError(
                            "ServerError", f"Prometheus answered {response.status}: {(body or {}).get('error')}"
                        )
                        continue
                    if not isinstance(body, dict) or body.get("status") != "success":
                        raise PrometheusError("BadResponse", f"unexpected answer from Prometheus: {str(body)[:200]}")
                    return body["data"]
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
                last = PrometheusError("Unreachable", f"Prometheus at {self.url} is unreachable: {error}")
            except TimeoutError:
                last = PrometheusError("Timeout", f"Prometheus at {self.url} did not answer within {self.timeout}s")
            except ValueError as error:
                raise PrometheusError(
                    "BadResponse", f"Prometheus answered something that is not JSON: {error}"
                ) from None
        assert last is not None
        raise last

    async def query(self, promql: str, at: float | None = None) -> list[Sample]:
        """An instant query's vector (scalars come back as one unlabelled sample)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        data = await self._get("/api/v1/query", params)
        if data.get("resultType") == "scalar":
            return [Sample({}, _number(data["result"][1]))]
        return [Sample(dict(item["metric"]), _number(item["value"][1])) for item in data.get("result", [])]

    async def query_range(self, promql: str, start: float, end: float, step: float) -> list[Series]:
        data = await self._get(
            "/api/v1/query_range", {"query": promql, "start": repr(start), "end": repr(end), "step": repr(step)}
        )
        return [
            Series(dict(item["metric"]), [(float(t), _number(v)) for t, v in item["values"]])
            for item in data.get("result", [])
        ]


def _number(text: str) -> float:
    """Prometheus' sample value; NaN (e.g. 0/0) stays NaN: no data is for the
    caller to treat as such, never silently a zero."""
    return float(text)


def arrange(
    samples: Sequence[Sample],
    overrides: Mapping[str, Sequence[Sample]] | None = None,
    feedback: tuple[float, float] | None = None,
) -> WindowCounts:
    """Counts per feature from the batched query; ``overrides`` are the answers
    of a feature's own query (by ``le`` or by ``category``), ``feedback`` the
    (correct, total) of user accuracy queries."""
    numeric: dict[str, list[tuple[float, float]]] = {}
    categorical: dict[str, dict[str, float]] = {}
    outcomes: dict[str, float] = {}
    for sample in samples:
        labels = sample.labels
        if "le" in labels and "feature" in labels:
            numeric.setdefault(labels["feature"], []).append((float(labels["le"]), sample.value))
        elif "category" in labels and "feature" in labels:
            categorical.setdefault(labels["feature"], {})[labels["category"]] = sample.value
        elif "outcome" in labels:
            outcomes[labels["outcome"]] = sample.value
    for feature, answer in (overrides or {}).items():
        numeric.pop(feature, None)
        categorical.pop(feature, None)
        for sample in answer:
            if "le" in sample.labels:
                numeric.setdefault(feature, []).append((float(sample.labels["le"]), sample.value))
            elif "category" in sample.labels:
                categorical.setdefault(feature, {})[sample.labels["category"]] = sample.value
    if feedback is not None:
        correct, total = feedback
        # Unclipped: more correct than total answers is for the core to refuse.
        outcomes = {"correct": correct, "incorrect": total - correct}
    for buckets in numeric.values():
        buckets.sort()
    return WindowCounts(numeric, categorical, outcomes)
