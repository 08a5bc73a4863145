"""Which credentials the operator may use, and where it may send them: the
guard against a confused deputy. Pure; the Kubernetes adapter asks it before
handing a Secret's data to anyone, the Prometheus adapter and the webhook
sender before sending.

Whoever may create a DriftPolicy or an ABExperiment may name any Secret of
its namespace (``authSecretRef``, ``caSecretRef``, a webhook's
``urlSecretRef``) and any URL. The operator can read Secrets; that person
perhaps cannot. So:

- a Secret is used only when it opts in: the annotation
  ``relearn.dev/allowed-uses`` lists the uses it allows (``prometheus``,
  ``webhook``, comma-separated);
- the operator can be limited to Prometheus URLs (prefixes) and webhook
  hosts (``host`` or ``*.domain``) by its flags ``--allowed-prometheus-url``
  and ``--allowed-webhook-host`` (chart values
  ``security.allowedPrometheusUrls`` and ``security.allowedWebhookHosts``);
  empty lists allow any.

A refused use raises :class:`UseRefused` (reason ``SecretNotAllowed`` or
``URLNotAllowed``); the handlers turn it into a condition and an Event, and
nothing is sent.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from relearn.errors import RelearnError

CONSENT_ANNOTATION = "relearn.dev/allowed-uses"
Use = Literal["prometheus", "webhook"]


class UseRefused(RelearnError):
    """A Secret or URL the operator may not use for what a custom resource asked."""

    reason = "SecretNotAllowed"


@dataclass(frozen=True)
class Allowlist:
    """The operator's limits on where credentials go (empty: anywhere)."""

    prometheus_urls: tuple[str, ...] = ()
    webhook_hosts: tuple[str, ...] = ()


def check_secret(name: str, annotations: Mapping[str, str] | None, use: Use) -> None:
    """Refuse a Secret that does not list ``use`` in its consent annotation."""
    allowed = {u.strip() for u in ((annotations or {}).get(CONSENT_ANNOTATION) or "").split(",") if u.strip()}
    if use not in allowed:
        raise UseRefused(
            f"Secret {name} does not allow Relearn to use it for {use}: "
            f"annotate it {CONSENT_ANNOTATION}={use} if it is meant for that",
            reason="SecretNotAllowed",
        )


def _prefix_matches(url: str, prefix: str) -> bool:
    url_parts, prefix_parts = urllib.parse.urlsplit(url), urllib.parse.urlsplit(prefix)
    if (url_parts.scheme, url_parts.netloc.lower()) != (prefix_parts.scheme, prefix_parts.netloc.lower()):
        return False
    path, wanted = url_parts.path.rstrip("/"), prefix_parts.path.rstrip("/")
    return path == wanted or path.startswith(wanted + "/")


def check_prometheus_url(url: str, allowed: Sequence[str]) -> None:
    """Refuse a Prometheus URL outside the allowed prefixes (scheme, host and port equal; path below)."""
    if allowed and not any(_prefix_matches(url, prefix) for prefix in allowed):
        raise UseRefused(
            f"Prometheus URL {url} is not among the operator's allowed Prometheus URLs "
            "(chart value security.allowedPrometheusUrls)",
            reason="URLNotAllowed",
        )


def host_allowed(url: str, allowed: Sequence[str]) -> bool:
    if not allowed:
        return True
    host = (urllib.parse.urlsplit(url).hostname or "").lower()
    for entry in allowed:
        entry = entry.lower()
        if host == entry or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


def check_webhook_url(webhook: str, url: str, allowed: Sequence[str]) -> None:
    """Refuse a webhook URL whose host is not allowed (the URL itself is never quoted: it holds a token)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise UseRefused(f"webhook {webhook}: its URL Secret does not hold an http(s) URL", reason="URLNotAllowed")
    if not host_allowed(url, allowed):
        raise UseRefused(
            f"webhook {webhook}: its host is not among the operator's allowed webhook hosts "
            "(chart value security.allowedWebhookHosts)",
            reason="URLNotAllowed",
        )
