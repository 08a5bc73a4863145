"""Decision notifications: every experiment decision POSTed to the
webhooks an experiment names, besides its Events.

``json`` sends the decision as a JSON object; ``slack`` sends a
Slack-compatible incoming-webhook message (``{"text": ...}``). The URL comes
from a Secret (it usually carries a token) and is never logged. Each
webhook gets three attempts with 1 s and 2 s backoff and a timeout per
attempt; the sending runs in the background, so a slow or failing webhook
never blocks or changes a decision.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import aiohttp

from relearn.api.abexperiment import Webhook
from relearn.core.consent import check_webhook_url
from relearn.core.durations import parse_duration
from relearn.metrics import WEBHOOKS

logger = logging.getLogger(__name__)
ATTEMPTS = 3
_pending: set[asyncio.Task[bool]] = set()  # background sends, kept alive until done

SecretReader = Callable[[str], Awaitable[Mapping[str, str]]]


def payload(webhook: Webhook, decision: Mapping[str, Any]) -> dict[str, Any]:
    if webhook.format == "slack":
        return {"text": slack_text(decision)}
    return dict(decision)


def slack_text(decision: Mapping[str, Any]) -> str:
    head = f"*{decision['outcome']}* {decision['kind']} `{decision['namespace']}/{decision['name']}`"
    return f"{head} (model {decision['model']}): {decision['message']}"


async def send(
    webhook: Webhook, decision: Mapping[str, Any], read_secret: SecretReader, allowed_hosts: Sequence[str] = ()
) -> bool:
    """Deliver one decision to one webhook; True when it answered 2xx. Its
    URL Secret must allow the use ``webhook`` (``read_secret`` checks) and
    its host be among ``allowed_hosts`` (when any are given)."""
    try:
        url = (await read_secret(webhook.url_secret_ref.name))[webhook.url_secret_ref.key]
        check_webhook_url(webhook.name, url, allowed_hosts)
    except Exception as error:
        logger.warning("webhook %s: cannot read its URL Secret: %s", webhook.name, type(error).__name__)
        WEBHOOKS.labels("failed").inc()
        return False
    timeout = aiohttp.ClientTimeout(total=parse_duration(webhook.timeout).total_seconds())
    body = json.dumps(payload(webhook, decision)).encode()
    for attempt in range(ATTEMPTS):
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(url, data=body, headers={"Content-Type": "application/json"}) as response,
            ):
                if 200 <= response.status < 300:
                    WEBHOOKS.labels("delivered").inc()
                    return True
                problem = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as error:
            problem = type(error).__name__
        logger.warning("webhook %s: attempt %d of %d failed: %s", webhook.name, attempt + 1, ATTEMPTS, problem)
        if attempt < ATTEMPTS - 1:
            await asyncio.sleep(2**attempt)
    WEBHOOKS.labels("failed").inc()
    return False


def notify(
    webhooks: Sequence[Webhook],
    decision: Mapping[str, Any],
    read_secret: SecretReader,
    allowed_hosts: Sequence[str] = (),
) -> None:
    """Send in the background and return at once."""
    for webhook in webhooks:
        task = asyncio.create_task(send(webhook, decision, read_secret, allowed_hosts), name=f"webhook-{webhook.name}")
        _pending.add(task)
        task.add_done_callback(_pending.discard)
