"""DriftPolicy monitoring: one kopf daemon per policy checks drift every
``spec.interval`` and writes what it found.

Each check: find the model's champion ModelVersion; take the reference (its
training baseline, or the same window ``offset`` into the past); query
Prometheus once per window for every feature and the feedback counts;
decide with ``relearn.core.drift_policy``; write status (per-feature scores
with the counts behind them, concept drift, conditions MetricsAvailable,
Drifted, Retraining) and Events when drift starts or ends, when metrics go
missing or come back, and when a retraining is requested.

Prometheus unreachable, or no data: ``MetricsAvailable=False`` with the
reason, no drift decision, and the daemon goes on to the next interval.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
from pydantic import ValidationError

from relearn.adapters.kube import KubeClient
from relearn.adapters.prometheus import (
    PrometheusAuth,
    PrometheusClient,
    PrometheusError,
    arrange,
    auth_for,
    label_matcher,
    render,
    scope,
    window_query,
)
from relearn.api import GROUP, VERSION
from relearn.api.base import rfc3339
from relearn.api.conditions import get_condition
from relearn.api.driftpolicy import DriftPolicySpec, DriftPolicyStatus
from relearn.api.modelversion import ModelVersionSpec
from relearn.api.names import DRIFTED, METRICS_AVAILABLE, RETRAINING
from relearn.core import drift_policy
from relearn.core.consent import Allowlist
from relearn.core.drift_policy import Assessment, WindowCounts, WindowData
from relearn.core.durations import parse_duration
from relearn.core.jobs import name_limit
from relearn.errors import APIError, DecisionError, Forbidden, NotFound, RelearnError
from relearn.handlers import retraining
from relearn.handlers.guard import Guard, Slots, interval_seconds, keep_turning
from relearn.handlers.lookups import Lookup, turn_slot
from relearn.handlers.outcome import Outcome, apply, event_basis, post_events
from relearn.metrics import DECISIONS, DRIFT_CHECKS, DRIFT_SCORE, HANDLER_SECONDS

logger = logging.getLogger(__name__)

NO_LIMITS = Allowlist()


class CheckFailed(RelearnError):
    """No drift decision this time; the reason goes to MetricsAvailable, and
    an Event (``event``) when the reason is new."""

    def __init__(self, reason: str, message: str, event: str = "MetricsUnavailable") -> None:
        super().__init__(message, reason=reason)
        self.event = event


async def _auth(kube: KubeClient, namespace: str, spec: DriftPolicySpec, allowed: Allowlist) -> PrometheusAuth:
    try:
        return await auth_for(
            spec.prometheus, lambda name: kube.read_secret(namespace, name, "prometheus"), allowed.prometheus_urls
        )
    except PrometheusError as refused:  # a Secret without consent, a URL not allowed: nothing is sent
        raise CheckFailed(f"Prometheus{refused.reason}", refused.message) from None
    except APIError as error:
        raise CheckFailed("SecretUnavailable", f"cannot read the Prometheus credentials: {error.http_reason}") from None


async def _baseline(kube: KubeClient, namespace: str, version: dict[str, Any]) -> WindowData:
    spec = ModelVersionSpec.model_validate(version["spec"])
    name = version["metadata"]["name"]
    if spec.baseline and spec.baseline.config_map_ref and not spec.baseline.features:
        ref = spec.baseline.config_map_ref
        try:
            data = json.loads((await kube.read_config_map(namespace, ref.name))[ref.key])
            spec = ModelVersionSpec.model_validate({**version["spec"], "baseline": data})
        except (APIError, KeyError, ValueError, ValidationError) as error:
            raise CheckFailed(
                "NoBaseline", f"baseline ConfigMap {ref.name}/{ref.key} of {name} is unreadable: {error}"
            ) from None
    reference = drift_policy.from_baseline(spec)
    if not reference.features:
        raise CheckFailed(
            "NoBaseline", f"champion {name} has no baseline: register one, or set spec.reference.source: Window"
        )
    return reference


async def check(
    kube: KubeClient,
    name: str,
    namespace: str,
    uid: str,
    spec: DriftPolicySpec,
    status: DriftPolicyStatus,
    now: datetime.datetime,
    allowed: Allowlist = NO_LIMITS,
    lookup: Lookup | None = None,
) -> Outcome:
    """One drift check of a policy, as status updates and Events; the
    champion read through ``lookup`` (the index of the model's versions)."""
    outcome = Outcome()
    lookup = lookup or Lookup(kube)
    try:
        champion = await lookup.champion(namespace, spec.model)
    except APIError as error:
        why = f"cannot read the model's champion (its ModelVersions, its champion record): {error.http_reason}"
        raise CheckFailed("KubernetesAPIError", why) from None
    labels = scope(namespace, spec.prometheus, model=spec.model)  # this namespace's series only
    if champion is not None:
        labels["version"] = champion["spec"]["version"]
    try:
        label_matcher(labels)
    except ValueError as error:
        raise CheckFailed("InvalidLabel", str(error)) from None
    if spec.reference.source == "Baseline":
        if champion is None:
            raise CheckFailed(
                "NoChampion",
                f"model {spec.model} has no champion ModelVersion to take a baseline "
                "from (declare one with spec.declaredChampion)",
            )
        reference = await _baseline(kube, namespace, dict(champion))
        reference_text = f"baseline of {champion['metadata']['name']}"
    else:
        reference_text = f"the same {spec.window} window {spec.reference.offset} earlier"

    timeout = parse_duration(spec.prometheus.timeout).total_seconds()
    async with PrometheusClient(
        spec.prometheus.url, timeout=timeout, auth=await _auth(kube, namespace, spec, allowed)
    ) as prometheus:
        try:
            current_window = await read_window(prometheus, spec, labels, now)
            if spec.reference.source == "Window":
                reference_window = await read_window(prometheus, spec, labels, now, offset=spec.reference.offset)
        except PrometheusError as error:
            raise CheckFailed(f"Prometheus{error.reason}", error.message) from None
        except ValueError as error:  # a user query that cannot be rendered safely
            raise CheckFailed("InvalidQuery", str(error)) from None
    try:
        if spec.reference.source == "Window":
            reference = drift_policy.from_window(reference_window)
        current = drift_policy.from_window(current_window)
        if current.empty:
            raise CheckFailed(
                "NoData",
                f"Prometheus has no series for {label_matcher(labels)} in the last {spec.window}: "
                "is the model server exporting the metric contract and scraped?",
            )
        assessment = drift_policy.assess(spec, reference, current)
    except DecisionError as error:  # counts that cannot be real: recorded, never decided on
        raise CheckFailed(error.reason, f"no drift decision: {error.message}", event=error.reason) from None
    outcome.condition(
        METRICS_AVAILABLE, "True", "MetricsRead", f"read {len(current.features)} features from Prometheus"
    )
    outcome.status.update(
        drift_policy.status_scores(assessment),
        monitoredVersion=labels.get("version", ""),
        reference=reference_text,
        lastCheckTime=rfc3339(now),
    )
    _decide(outcome, spec, status, assessment, name, uid, now)
    return outcome


async def read_window(
    prometheus: PrometheusClient,
    spec: DriftPolicySpec,
    labels: dict[str, str],
    now: datetime.datetime,
    offset: str | None = None,
) -> WindowCounts:
    """One window's counts: the batched query, plus each user-supplied query
    (evaluated ``offset`` earlier for a reference window)."""
    at = (now - parse_duration(offset)).timestamp() if offset else None
    batched = await prometheus.query(window_query(labels, spec.window, offset=offset))
    overrides = {
        f.name: await prometheus.query(render(f.query, labels, spec.window), at=at) for f in spec.features if f.query
    }
    feedback = None
    if spec.accuracy.correct_query and spec.accuracy.total_query:
        correct = await prometheus.query(render(spec.accuracy.correct_query, labels, spec.window), at=at)
        total = await prometheus.query(render(spec.accuracy.total_query, labels, spec.window), at=at)
        feedback = (sum(s.value for s in correct), sum(s.value for s in total))
    return arrange(batched, overrides, feedback)


def _decide(
    outcome: Outcome,
    spec: DriftPolicySpec,
    status: DriftPolicyStatus,
    assessment: Assessment,
    name: str,
    uid: str,
    now: datetime.datetime,
) -> None:
    previous = get_condition(status.conditions or [], DRIFTED)
    decision = drift_policy.decide_check(
        spec,
        assessment,
        was_drifted=previous is not None and previous.status == "True",
        consecutive=status.consecutive_drifted_checks or 0,
        last=status.last_retraining,
        policy=name,
        uid=uid,
        name_limit=name_limit(spec),
        now=now,
    )
    outcome.conditions += [decision.drifted] + ([decision.retraining] if decision.retraining else [])
    outcome.events += decision.events
    outcome.status["consecutiveDriftedChecks"] = decision.consecutive
    if decision.request is not None:
        outcome.status["lastRetraining"] = decision.request.to_wire()
        DECISIONS.labels("retraining", "Requested").inc()


async def monitor(
    *,
    stopped: kopf.DaemonStopped,
    name: str,
    namespace: str | None,
    uid: str,
    body: kopf.Body,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    """The daemon of one DriftPolicy: a drift check (and the retraining it
    drives) every ``spec.interval``, guarded so that no error stops it. Checks
    keep their period and are spread over it (:mod:`relearn.core.schedule`)."""
    kube: KubeClient = memo["kube"]
    allowed: Allowlist = memo.get("allowed") or NO_LIMITS
    assert namespace is not None  # DriftPolicy is namespaced
    guard = Guard(kube, "driftpolicies", namespace, name, body, logger)
    lookup = Lookup.of(kube, kwargs)
    slots = Slots(uid)

    async def turn() -> float | None:
        async with turn_slot(memo):
            return await checked()

    async def checked() -> float | None:
        try:
            spec = DriftPolicySpec.model_validate(dict(body.spec))
        except ValidationError:
            return 30.0  # the spec handler reports it; look again later
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        status = DriftPolicyStatus.model_validate(dict(body.status or {}))
        generation = body.metadata.get("generation")

        def advancing(status: DriftPolicyStatus) -> Awaitable[retraining.Progress | None]:
            record = status.last_retraining
            return retraining.advance(kube, name=name, namespace=namespace, uid=uid, spec=spec, record=record, now=now)

        with HANDLER_SECONDS.labels("DriftPolicy", "drift-check").time():
            checking = check(kube, name, namespace, uid, spec, status, now, allowed, lookup)
            outcome = await _drift_check(checking, name, namespace, status, now, logger)
        requested = "lastRetraining" in outcome.status
        if not requested:
            await _advance_retraining(advancing(status), outcome, logger)
        written = await _write(kube, guard, body, namespace, name, outcome, generation, status, now, logger)
        if written is None:
            return None  # deleted meanwhile
        if requested:
            # The request is recorded: only now its Job (named by the request, so at most one).
            status = DriftPolicyStatus.model_validate(written.get("status") or {})
            outcome = Outcome()
            await _advance_retraining(advancing(status), outcome, logger)
            if await _write(kube, guard, body, namespace, name, outcome, generation, status, now, logger) is None:
                return None
        return slots.wait(interval_seconds(spec.interval))

    await keep_turning(stopped, guard, turn)


async def _drift_check(
    checking: Awaitable[Outcome],
    name: str,
    namespace: str,
    status: DriftPolicyStatus,
    now: datetime.datetime,
    logger: kopf.Logger,
) -> Outcome:
    """One check (``checking``, a :func:`check`) as an Outcome; a check
    without a decision says why (MetricsAvailable, Drifted)."""
    try:
        outcome = await checking
        DRIFT_CHECKS.labels(_result(outcome)).inc()
    except DecisionError as refused:  # the decision core refused what was measured
        outcome = Outcome(status={"lastCheckTime": rfc3339(now)})
        outcome.condition(DRIFTED, "Unknown", refused.reason, f"no drift decision: {refused.message}")
        logger.warning("drift check without a decision (%s): %s", refused.reason, refused.message)
        DRIFT_CHECKS.labels("no-decision").inc()
        previous = get_condition(status.conditions or [], DRIFTED)
        if previous is None or previous.reason != refused.reason:
            outcome.event("Warning", refused.reason, f"no drift decision: {refused.message}")
    except CheckFailed as failure:
        outcome = Outcome(status={"lastCheckTime": rfc3339(now)})
        outcome.condition(METRICS_AVAILABLE, "False", failure.reason, failure.message)
        logger.warning("drift check without a decision: %s", failure.message)
        DRIFT_CHECKS.labels("no-decision").inc()
        previous = get_condition(status.conditions or [], METRICS_AVAILABLE)
        if previous is None or previous.status != "False" or previous.reason != failure.reason:
            outcome.event("Warning", failure.event, failure.message)
    else:
        previous = get_condition(status.conditions or [], METRICS_AVAILABLE)
        if previous is not None and previous.status == "False":
            outcome.event("Normal", "MetricsRestored", "Prometheus answers again")
        _export_scores(namespace, name, outcome)
    return outcome


async def _write(
    kube: KubeClient,
    guard: Guard,
    body: kopf.Body,
    namespace: str,
    name: str,
    outcome: Outcome,
    generation: int | None,
    status: DriftPolicyStatus,
    now: datetime.datetime,
    logger: kopf.Logger,
) -> dict[str, Any] | None:
    """Events, then status; None when the policy was deleted meanwhile."""
    # Events first: a turn cut short before its status write is redone
    # next turn (an Event twice), never an Event lost.
    basis = event_basis(status.to_wire())
    await post_events(kube, body, outcome, logger, basis)
    guard.settle(outcome, status.conditions)
    try:
        written = await kube.update_status("driftpolicies", namespace, name, apply(outcome, generation, now))
    except NotFound:
        return None
    guard.finished()
    return written


def register(registry: kopf.OperatorRegistry, when: Callable[..., bool] | None = None) -> None:
    kopf.daemon(
        GROUP, VERSION, "driftpolicies", id="drift-monitor", registry=registry, cancellation_timeout=10, when=when
    )(monitor)


async def _advance_retraining(
    advancing: Awaitable[retraining.Progress | None], outcome: Outcome, logger: kopf.Logger
) -> None:
    """Move the active retraining on (``advancing``, a
    :func:`retraining.advance` of the policy's last recorded request, which
    is this very check's once it is written) into ``outcome``."""
    try:
        progress = await advancing
    except APIError as error:
        if isinstance(error, Forbidden):  # refused, not transient: say so
            outcome.condition(RETRAINING, "Unknown", "KubernetesAPIError", f"{error.status} {error.http_reason}")
        logger.warning("retraining not advanced this turn: %s", error.http_reason)
        return
    if progress is None:
        return
    outcome.status["lastRetraining"] = progress.record.to_wire()
    if progress.condition:
        outcome.conditions.append(progress.condition)
    outcome.events += progress.events


def _result(outcome: Outcome) -> str:
    return {"True": "drifted", "False": "no-drift"}.get(outcome.state(DRIFTED) or "", "not-enough-data")


def _export_scores(namespace: str, name: str, outcome: Outcome) -> None:
    for feature in outcome.status.get("features", []):
        for score in ("psi", "jensenShannon", "pValue"):
            if score in feature:
                DRIFT_SCORE.labels(namespace, name, feature["name"], score).set(feature[score])
