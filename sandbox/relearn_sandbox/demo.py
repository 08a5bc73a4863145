"""``relearn demo``: Relearn in the local sandbox, step by step on a timeline.

What ``make demo`` runs: the sandbox control plane comes up, the CRDs
install, the operator starts, the invoice-classifier CRs are applied and
judged (by admission and by the operator); then the whole loop on a real
pretrained model (all-MiniLM-L6-v2, offline) served with live traffic
(:mod:`relearn_sandbox.demo_loop`): drift injected, the DriftPolicy noticing, a LoRA
Job retraining, the new ModelVersion registered and measured on held-out
drifted documents, its ABExperiment promoting it on live traffic, a fault in the new
champion and the automatic rollback. A summary table and where to look
follow. Every process it starts is stopped on exit or Ctrl-C, unless
``--keep`` leaves the sandbox and operator running to explore.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from rich.console import Console
from rich.table import Table

from relearn_sandbox import control
from relearn_sandbox.interrupts import Interrupts
from relearn_sandbox.processes import free_port, start_operator, stop_operator
from relearn_sandbox.prometheus import scrape_operator
from relearn_sandbox.waiting import condition, established, wait_for

GROUP, VERSION = "relearn.dev", "v1alpha1"
PLURALS = {"ModelVersion": "modelversions", "DriftPolicy": "driftpolicies", "ABExperiment": "abexperiments"}
EXAMPLE_FILES = ("modelversion-1.0.0.yaml", "modelversion-1.1.0.yaml", "driftpolicy.yaml", "abexperiment.yaml")


class Timeline:
    """Numbered steps with the time since the demo started."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.steps: list[tuple[str, float]] = []
        self.current = ""  # the step under way: named when it fails

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        begun = time.monotonic()
        self.current = title
        with self.console.status(title):
            yield
        self.current = ""
        took = time.monotonic() - begun
        self.steps.append((title, took))
        self.console.print(
            f"[dim]{time.monotonic() - self.started:6.1f}s[/dim]  [green]✓[/green] {title} [dim]({took:.1f}s)[/dim]"
        )


def repo_root() -> Path:
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "examples" / "invoice-classifier").is_dir():
            return parent
    raise FileNotFoundError("examples/invoice-classifier not found: run the demo from a Relearn checkout")


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["kubectl", *args],
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        input=input,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


LOG_LINES = 15  # the last lines of each log shown when a step fails


def tail(text: str, lines: int = LOG_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _pod_report(core: client.CoreV1Api, namespace: str, pod: Any) -> tuple[str, str] | None:
    """A pod that is not ready or has restarted: its containers' states and the last lines of its log."""
    statuses = pod.status.container_statuses or []
    restarts = sum(s.restart_count or 0 for s in statuses)
    ready = bool(statuses) and all(s.ready for s in statuses)
    if ready and not restarts and pod.status.phase in ("Running", "Succeeded"):
        return None
    states = []
    for s in statuses:
        terminated = s.state.terminated or (s.last_state.terminated if s.last_state else None)
        waiting = s.state.waiting
        if terminated is not None:
            states.append(
                f"{s.name}: exited {terminated.exit_code} {terminated.reason or ''} {terminated.message or ''}"
            )
        elif waiting is not None:
            states.append(f"{s.name}: waiting {waiting.reason or ''} {waiting.message or ''}")
    logs = []
    # A restarted container's crash is in its previous run's log; the current run may not have said anything yet.
    for previous in (True, False) if restarts else (False,):
        try:
            text = tail(core.read_namespaced_pod_log(pod.metadata.name, namespace, previous=previous))
        except Exception as error:
            text = f"(no log: {error})"
        logs.append(f"{'previous run' if previous else 'current run'}:\n{text}" if restarts else text)
    return (
        f"pod/{pod.metadata.name} ({pod.status.phase}, {restarts} restarts)",
        "\n".join([*(x.strip() for x in states), "\n".join(logs)]),
    )


def explain_failure(api: client.ApiClient, namespace: str, workdir: Path) -> list[tuple[str, str]]:
    """What a user needs to see when a step did not happen: (title, text) for every pod that is not
    ready or has restarted (its state and the last lines of its log), every Job, every Relearn object's
    conditions that are not what the loop waits for, and the operator's log."""
    core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
    found: list[tuple[str, str]] = []
    try:
        pods = core.list_namespaced_pod(namespace).items
        jobs = batch.list_namespaced_job(namespace).items
    except Exception as error:  # the API server itself may be what failed
        return [("the API server", f"could not be read: {error}")]
    relearn: list[tuple[str, dict[str, Any]]] = []
    for kind, plural in PLURALS.items():
        try:
            relearn += [
                (kind, item)
                for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
            ]
        except client.ApiException as error:  # the CRDs may be what is missing
            found.append((f"{kind} objects", f"could not be listed: {error.reason}"))
    found += [report for report in (_pod_report(core, namespace, pod) for pod in pods) if report is not None]
    for job in jobs:
        conditions = "; ".join(
            f"{c.type}={c.status} {c.reason or ''} {c.message or ''}" for c in job.status.conditions or []
        )
        found.append((f"job/{job.metadata.name}", conditions or "running, no condition yet"))
    for kind, item in relearn:
        status = item.get("status") or {}
        lines = [
            f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: {c.get('message', '')}"
            for c in status.get("conditions") or ()
        ]
        phase = status.get("phase")
        found.append(
            (
                f"{kind.lower()}/{item['metadata']['name']}" + (f" ({phase})" if phase else ""),
                "\n".join(lines) or "no status yet",
            )
        )
    operator_log = workdir / "operator.log"
    if operator_log.exists():
        found.append((f"operator log ({operator_log})", tail(operator_log.read_text(errors="replace"))))
    return found


def _report_step(
    console: Console, timeline: Timeline, kubeconfig: Path, namespace: str, workdir: Path, loop: dict[str, Any] | None
) -> None:
    """The report of the loop's model (of every model when the loop did not run)."""
    model: str | None = None
    if loop is not None:
        from relearn_sandbox.demo_loop import MODEL

        model = MODEL
    with timeline.step(f"report written: relearn report -o {workdir / 'report.html'}"):
        for line in write_report(kubeconfig, namespace, workdir / "report.html", model):
            console.print(f"    [cyan]{line}[/cyan]", highlight=False)


def write_report(kubeconfig: Path, namespace: str, path: Path, model: str | None) -> list[str]:
    """``relearn report`` of the demo's model (every model when None) at ``path``; its summary lines."""
    import asyncio
    import datetime

    from relearn import reporting
    from relearn.adapters.kube import connect
    from relearn.reporting import render

    try:
        import matplotlib  # noqa: F401  (the report extra)
    except ImportError:
        return ["the report extra is not installed: no report (pip install 'relearn-operator[report]')"]
    target = connect(namespace, str(kubeconfig))
    reports = asyncio.run(
        reporting.generate(
            target, [model] if model else (), since=datetime.timedelta(hours=1), scrape_interval=1.0
        )  # the sandbox's Prometheus scrapes every second
    )
    location = reporting.write(str(path), render.to_html(reports, datetime.datetime.now(datetime.UTC)))
    return [*"\n".join(render.summary(r) for r, _ in reports).splitlines(), f"open {location} in a browser"]


def ready_is(name: str, status: str = "True") -> Callable[[dict[str, Any]], bool]:
    return lambda obj: obj["metadata"]["name"] == name and condition(obj, "Ready", status)


def _drift_to_rollback(
    console: Console,
    timeline: Timeline,
    api: client.ApiClient,
    kubeconfig: Path,
    workdir: Path,
    state: dict[str, Any],
    namespace: str,
) -> dict[str, Any] | None:
    """The loop itself (drift, retraining, experiment, promotion, rollback) when the trainer extra is installed."""
    try:
        from relearn_trainer import synthetic  # the trainer extra: torch, transformers, peft

        synthetic.minilm_path()  # the demo's base model, offline
    except ImportError:
        console.print(
            "[yellow]the trainer extra is not installed: skipping drift -> retraining "
            "(pip install 'relearn-operator[trainer]')[/yellow]"
        )
        return None
    except LookupError as missing:
        console.print(f"[yellow]skipping drift -> retraining: {missing}[/yellow]")
        return None
    from relearn_sandbox.demo_loop import run_loop

    loop = run_loop(
        timeline.step,
        lambda text: console.print(f"    [cyan]{text}[/cyan]"),
        api,
        kubectl,
        kubeconfig,
        workdir,
        state,
        namespace,
    )
    console.out(kubectl(kubeconfig, "get", "mv,dp,abx,jobs,deployments", "-n", namespace).stdout, highlight=False)
    return loop


def _report(
    console: Console, core: client.CoreV1Api, namespace: str, timeline: Timeline, loop: dict[str, Any] | None
) -> None:
    """The demo's end: the Events the operator posted, the timeline, and the loop's decisions with their numbers."""
    events = sorted(core.list_namespaced_event(namespace).items, key=lambda e: e.metadata.creation_timestamp)
    table = Table(title="Events the operator posted", show_lines=False)
    for column in ("type", "reason", "object", "message"):
        table.add_column(column)
    for event in events:
        table.add_row(
            event.type,
            event.reason,
            f"{event.involved_object.kind.lower()}/{event.involved_object.name}",
            event.message,
        )
    console.print(table)

    summary = Table(title="Timeline")
    summary.add_column("step")
    summary.add_column("seconds", justify="right")
    for title, took in timeline.steps:
        summary.add_row(title, f"{took:.1f}")
    console.print(summary)
    if loop is not None:
        decisions = Table(title="Decisions the operator took (with the numbers behind them)")
        decisions.add_column("decision")
        decisions.add_column("why")
        for what, why in loop["decisions"]:
            decisions.add_row(what, why)
        console.print(decisions)
        console.print(
            f"Traffic: {loop['requests']} requests, {loop['corrections']} human corrections. "
            f"{loop['version']} reached {loop['accuracy']:.2f} held-out accuracy where the champion had "
            f"{loop['championAccuracy']:.2f}; on {loop['heldOutDriftedDocuments']} held-out drifted documents "
            f"{loop['heldOutDrifted']:.1%} vs {loop['heldOutDriftedChampion']:.1%} "
            f"({(loop['heldOutDrifted'] - loop['heldOutDriftedChampion']) * 100:+.1f} points); "
            f"on live traffic its lift was {loop['lift']:+.3f} "
            f"[{loop['ciLower']:+.3f}, {loop['ciUpper']:+.3f}] after {loop['samples']:.0f} samples; "
            f"after the fault, traffic was back on 1.0.0 in {loop['rollbackSeconds']:.0f} s."
        )


def run_demo(workdir: Path, *, keep: bool = False, console: Console | None = None) -> int:
    """The whole loop in a sandbox of its own, step by step; 0 when every
    step happened. Ctrl-C stops it and everything it started
    (:class:`~relearn_sandbox.interrupts.Interrupts`: even one Python drops)."""
    with Interrupts() as interrupts:
        return _run_demo(workdir, keep=keep, console=console, interrupts=interrupts)


def _run_demo(workdir: Path, *, keep: bool, console: Console | None, interrupts: Interrupts) -> int:
    # Wide enough for `kubectl get` lines when the output is not a terminal.
    console = console or Console(width=None if sys.stdout.isatty() else 160)
    workdir = workdir.resolve()  # the model's paths go to pods, which run in folders of their own
    repo = repo_root()
    examples = repo / "examples" / "invoice-classifier"
    namespace = "default"
    timeline = Timeline(console)
    operator: subprocess.Popen[bytes] | None = None
    api: client.ApiClient | None = None
    console.rule("[bold]Relearn demo")
    try:
        with timeline.step("sandbox control plane up (API server, kubelet, gateway, Prometheus)"):
            # Unless kept, nothing the demo starts outlives it, even if it is killed.
            state = control.up(workdir, [], with_parent=not keep)
        kubeconfig = Path(state["kubeconfig"])
        api = config.new_client_from_config(config_file=str(kubeconfig))
        custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)

        with timeline.step("Relearn CRDs installed: kubectl apply -f crds/"):
            kubectl(kubeconfig, "apply", "-f", str(repo / "crds"))
            for plural in PLURALS.values():
                wait_for(
                    client.ApiextensionsV1Api(api).list_custom_resource_definition, established(f"{plural}.{GROUP}")
                )

        with timeline.step(f"operator running: relearn run -n {namespace}"):
            metrics_port = free_port()
            operator = start_operator(
                kubeconfig, [namespace], workdir / "operator.log", with_parent=not keep, metrics_port=metrics_port
            )
            scrape_operator(workdir / "prometheus", metrics_port)  # drift scores and weights, for the report

        docs = [yaml.safe_load((examples / name).read_text()) for name in EXAMPLE_FILES]
        with timeline.step("invoice-classifier declared: two ModelVersions, a DriftPolicy, an ABExperiment"):
            for name in EXAMPLE_FILES:
                kubectl(kubeconfig, "apply", "-n", namespace, "-f", str(examples / name))

        with timeline.step("operator accepted every spec (Ready=True, observedGeneration, Events)"):
            for doc in docs:
                wait_for(
                    custom.list_namespaced_custom_object,
                    ready_is(doc["metadata"]["name"]),
                    what=f"{doc['kind']} {doc['metadata']['name']} to be accepted (Ready=True)",
                    group=GROUP,
                    version=VERSION,
                    namespace=namespace,
                    plural=PLURALS[doc["kind"]],
                    timeout=60,
                )
        console.out(kubectl(kubeconfig, "get", "mv,dp,abx", "-n", namespace).stdout, highlight=False)

        with timeline.step("admission refused a broken CR, naming the field"):
            refused = kubectl(
                kubeconfig,
                "apply",
                "-n",
                namespace,
                "-f",
                str(repo / "tests" / "fixtures" / "broken" / "weight-150.yaml"),
                check=False,
            )
            if refused.returncode == 0:
                raise RuntimeError("the sandbox admitted an ABExperiment with weight 150")
        console.print(f"    [yellow]{refused.stderr.strip()}[/yellow]")

        bad = copy.deepcopy(docs[-1])
        bad["metadata"]["name"] = "invoice-classifier-descending"
        bad["spec"]["traffic"] = {"steps": [8, 4], "weight": 10}
        with timeline.step("operator flagged what no schema can check (traffic steps out of order)"):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", bad)
            flagged: dict[str, Any] = wait_for(
                custom.list_namespaced_custom_object,
                ready_is(bad["metadata"]["name"], "False"),
                what=f"ABExperiment {bad['metadata']['name']} to be flagged (Ready=False)",
                group=GROUP,
                version=VERSION,
                namespace=namespace,
                plural="abexperiments",
                timeout=60,
            )
        verdict = next(c for c in flagged["status"]["conditions"] if c["type"] == "Ready")
        console.print(f"    [yellow]Ready=False {verdict['reason']}: {verdict['message']}[/yellow]")

        loop = _drift_to_rollback(console, timeline, api, kubeconfig, workdir, state, namespace)
        _report_step(console, timeline, kubeconfig, namespace, workdir, loop)
        _report(console, core, namespace, timeline, loop)
        console.print(
            f"Look around:  export KUBECONFIG={kubeconfig}; kubectl get mv,dp,abx; "
            "kubectl describe abx documents-1.1.0; kubectl get events"
        )
        return 0
    except (TimeoutError, RuntimeError) as failure:
        # A step that did not happen: say which, and show the logs and conditions that explain why.
        console.print(f"[bold red]the demo failed at: {timeline.current or 'start-up'}[/bold red]")
        console.print(f"[red]{failure}[/red]")
        if api is not None:
            for title, text in explain_failure(api, namespace, workdir):
                console.rule(title, align="left", style="dim")
                console.out(text, highlight=False)
        console.print(
            "Run `relearn demo --keep` to leave the sandbox and the operator running after a failure, "
            f"then: export KUBECONFIG={workdir / 'kubeconfig'}; kubectl get pods,jobs,mv,dp,abx"
        )
        return 1
    finally:
        interrupts.settle()  # the clean-up below runs to its end
        if api is not None:
            api.close()
        if keep and operator is not None:
            console.print(
                f"[bold]--keep:[/bold] sandbox left running (relearn sandbox down --dir {workdir}); "
                f"operator pid {operator.pid} (kill {operator.pid})"
            )
        else:
            if operator is not None:
                stop_operator(operator)
            control.down(workdir)
