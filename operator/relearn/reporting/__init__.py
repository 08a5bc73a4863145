"""``relearn report`` and ``relearn status``: how the models of a namespace
have fared, for people (an HTML file, a terminal table) and scripts (JSON).

:func:`generate` reads the registry and Prometheus and builds one report per
model (:mod:`relearn.core.report` decides what it says);
:mod:`relearn.reporting.render` writes it; :func:`publish` stores it at any
fsspec URI (a local or PVC path, ``s3://``, ``gs://``) and posts the summary
with the report's location to a webhook, which is what the chart's scheduled
report (a CronJob running this command) does. Read-only: nothing here
changes an object.
"""

from __future__ import annotations

import datetime
import json
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from relearn.adapters.kube import Target
from relearn.core import report
from relearn.core.consent import check_webhook_url
from relearn.reporting.collect import Series, client_for, period, prometheus_url, read_objects, read_series


async def generate(
    target: Target,
    models: Sequence[str] = (),
    since: datetime.timedelta = datetime.timedelta(days=7),
    prometheus: str | None = None,
    token: str | None = None,
    now: datetime.datetime | None = None,
    scrape_interval: float = 30.0,
) -> list[tuple[report.ModelReport, Series]]:
    """One report per model (every model of the namespace when ``models`` is
    empty) over the last ``since``; Prometheus is ``prometheus`` or the URL
    the model's DriftPolicy reads; rates are taken over at least four of its
    ``scrape_interval`` (seconds)."""
    now = now or datetime.datetime.now(datetime.UTC)
    objects = read_objects(target)
    names = list(models) or report.models(objects.model_versions)
    result = []
    for model in names:
        start = period(objects, model, since, now)
        built = report.build(
            model,
            target.namespace,
            objects.model_versions,
            objects.abexperiments,
            objects.jobs,
            start,
            now,
            holder=objects.champions.get(model),
        )
        if not any((v.get("spec") or {}).get("model") == model for v in objects.model_versions):
            built.notes.append(f"no ModelVersion of {model} in {target.namespace}")
        url = prometheus or prometheus_url(objects, model)
        if not url:
            built.notes.append("no Prometheus: give --prometheus or a DriftPolicy for the model; plots are empty")
            result.append((built, Series()))
            continue
        async with client_for(url, token) as client:
            series = await read_series(
                client, objects, model, target.namespace, start, now, built.notes, scrape_interval
            )
        result.append((built, series))
    return result


def write(uri: str, content: str) -> str:
    """Store ``content`` at ``uri`` (a path or any fsspec URL); the full location."""
    if "://" not in uri:
        path = Path(uri).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        return str(path)
    import fsspec

    with fsspec.open(uri, "w", encoding="utf-8") as handle:
        handle.write(content)
    return uri


def notify(url: str, summary: str, location: str, form: str = "json", allowed_hosts: Sequence[str] = ()) -> None:
    """POST the summary and the report's location; three attempts, 1 s and 2 s apart.
    The URL usually carries a token: it is never printed."""
    check_webhook_url("report", url, allowed_hosts)
    text = f"{summary}\nreport: {location}"
    body = {"text": text} if form == "slack" else {"summary": summary, "report": location}
    data = json.dumps(body).encode()
    last: Exception | None = None
    for attempt in range(3):
        if attempt:
            time.sleep(attempt)
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                return
        except OSError as error:
            last = error
    raise OSError(f"the report's webhook did not accept the summary after 3 attempts: {type(last).__name__}")
