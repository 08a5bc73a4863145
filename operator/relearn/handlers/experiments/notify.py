"""What one ABExperiment turn writes, and who hears of it: Events first,
then one status write, then the webhooks (only those whose Secret and host
may be used, :mod:`relearn.core.consent`). Called by :mod:`.daemon` after
every turn.
"""

from __future__ import annotations

from typing import get_args

from relearn.adapters import webhooks
from relearn.api.abexperiment import ABExperimentStatus, ExperimentPhase
from relearn.api.base import rfc3339
from relearn.api.conditions import get_condition
from relearn.api.names import NOTIFICATIONS_ALLOWED
from relearn.core.consent import UseRefused, check_webhook_url
from relearn.errors import APIError
from relearn.handlers.experiments.context import PLURAL, Context
from relearn.handlers.outcome import Outcome, apply, event_basis, post_events
from relearn.metrics import EXPERIMENT_PHASE

PHASES = get_args(ExperimentPhase)  # every phase, for the phase gauge


async def refused_webhooks(ctx: Context, outcome: Outcome) -> set[str]:
    """The webhooks whose Secret or host may not be used: a condition and an
    Event each, and they are sent nothing (core.consent)."""
    hooks = (ctx.spec.notifications.webhooks if ctx.spec.notifications else None) or []
    refused: set[str] = set()
    problems = []
    for hook in hooks:
        try:
            url = (await ctx.kube.read_secret(ctx.namespace, hook.url_secret_ref.name, "webhook")).get(
                hook.url_secret_ref.key, ""
            )
            check_webhook_url(hook.name, url, ctx.allowed.webhook_hosts)
        except UseRefused as refusal:
            refused.add(hook.name)
            problems.append(refusal)
        except APIError:
            continue  # unreadable now: the sender retries and counts the failure
    if problems:
        message = "; ".join(p.message for p in problems)
        previous = get_condition(ctx.status.conditions or [], NOTIFICATIONS_ALLOWED)
        outcome.condition(NOTIFICATIONS_ALLOWED, "False", problems[0].reason, message)
        if previous is None or previous.message != message:
            outcome.event("Warning", "WebhookRefused", message)
    elif hooks and get_condition(ctx.status.conditions or [], NOTIFICATIONS_ALLOWED) is not None:
        outcome.condition(NOTIFICATIONS_ALLOWED, "True", "Allowed", "every webhook may be used")
    return refused


def notify(ctx: Context, decision: str, message: str, refused: set[str]) -> None:
    """Send a decision to the experiment's webhooks (in the background, see :mod:`relearn.adapters.webhooks`)."""
    hooks = [
        h for h in (ctx.spec.notifications.webhooks if ctx.spec.notifications else None) or [] if h.name not in refused
    ]
    if not hooks:
        return
    payload = {
        "kind": "ABExperiment",
        "namespace": ctx.namespace,
        "name": ctx.name,
        "model": ctx.spec.model,
        "champion": ctx.status.champion or ctx.spec.champion,
        "challenger": ctx.spec.challenger,
        "outcome": decision,
        "message": message,
        "time": rfc3339(ctx.now),
    }

    async def read(name: str) -> dict[str, str]:
        return await ctx.kube.read_secret(ctx.namespace, name, "webhook")

    webhooks.notify(hooks, payload, read, ctx.allowed.webhook_hosts)


async def write(ctx: Context, outcome: Outcome) -> ABExperimentStatus:
    """Events, then the status write, then webhooks; the status as written."""
    refused = await refused_webhooks(ctx, outcome) if outcome.notification is not None else set()
    basis = event_basis(ctx.status.to_wire())
    await post_events(ctx.kube, ctx.body, outcome, ctx.logger, basis)
    generation = ctx.body["metadata"].get("generation")
    written = await ctx.kube.update_status(PLURAL, ctx.namespace, ctx.name, apply(outcome, generation, ctx.now))
    if outcome.notification is not None:
        notify(ctx, outcome.notification.decision, outcome.notification.message, refused)
    status = ABExperimentStatus.model_validate(written.get("status") or {})
    for phase in PHASES:
        EXPERIMENT_PHASE.labels(ctx.namespace, ctx.name, phase).set(1 if status.phase == phase else 0)
    return status
