"""The ``relearn`` command: run the operator, print the CRDs, validate CRs.

relearn run [-n NS ...] [--peering NAME] [--log-format json] ...
relearn crds > crds.yaml
relearn validate examples/
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import random
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from pathlib import Path

from relearn import __version__

LOG_FORMATS = ("plain", "full", "json")
PLUGIN_GROUP = "relearn.cli"  # entry points that add commands (relearn-sandbox: demo, sandbox)
SANDBOX_COMMANDS = ("demo", "sandbox")


def _priority(text: str) -> int:
    # "auto" gives each replica its own priority so that, with peering, exactly
    # one is active and the others stand by until it stops answering.
    return random.SystemRandom().randint(1, 1_000_000) if text == "auto" else int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relearn", description="Relearn: keep production ML models learning.")
    parser.add_argument("--version", action="version", version=f"relearn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the operator against the current kubeconfig or in-cluster account")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        metavar="NS",
        help="serve only this namespace (repeatable; glob patterns allowed)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="serve every namespace (the default)")
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        metavar="URL",
        help="liveness endpoint to serve (empty to disable); default %(default)s",
    )
    run.add_argument("--metrics-port", type=int, default=9090, help="operator metrics port (0 disables)")
    run.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics server binds")
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate with other replicas through a kopf peering object (HA); default: standalone",
    )
    run.add_argument(
        "--priority",
        type=_priority,
        default=0,
        metavar="N|auto",
        help="peering priority: the highest alive replica is active; 'auto' picks a random one",
    )
    run.add_argument(
        "--shard",
        default=os.environ.get("RELEARN_SHARD", ""),
        metavar="I/N",
        help="act only on the objects of shard I of N (hash of namespace/name; docs/operations.md); default: all",
    )
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get("RELEARN_PROMETHEUS_URL", ""),
        metavar="URL",
        help="Prometheus for ABExperiments without spec.prometheus (env RELEARN_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--allowed-prometheus-url",
        action="append",
        default=_env_list("RELEARN_ALLOWED_PROMETHEUS_URLS"),
        metavar="URL",
        help="only query Prometheus under this URL prefix (repeatable; default: any)",
    )
    run.add_argument(
        "--allowed-webhook-host",
        action="append",
        default=_env_list("RELEARN_ALLOWED_WEBHOOK_HOSTS"),
        metavar="HOST",
        help="only send notifications to this host or *.domain (repeatable; default: any)",
    )
    run.add_argument("--log-format", choices=LOG_FORMATS, default="full", help="log line format")
    run.add_argument("-v", "--verbose", action="store_true", help="log debug details of handling")

    commands.add_parser("crds", help="print the CustomResourceDefinitions as YAML")

    for verb, text in (
        ("promote", "approve the promotion of a Manual ABExperiment's challenger (annotation relearn.dev/approve)"),
        ("abort", "abort an ABExperiment: all traffic back to the champion (annotation relearn.dev/abort)"),
    ):
        command = commands.add_parser(verb, help=text)
        command.add_argument("experiment", help="ABExperiment name")
        _cluster_arguments(command)

    command = commands.add_parser(
        "report", help="how each model fared over a period: one self-contained HTML file (or JSON) and a summary"
    )
    command.add_argument("models", nargs="*", metavar="MODEL", help="models to report on (default: every model)")
    _cluster_arguments(command)
    command.add_argument("--since", type=_duration, default="7d", help="period to cover (default %(default)s)")
    command.add_argument(
        "-o",
        "--output",
        default="relearn-report.html",
        metavar="PATH|URI",
        help="where to write: a path or fsspec URI; {namespace} and {date} are filled in (%(default)s)",
    )
    command.add_argument("--format", choices=("html", "json"), default="html", help="html (default) or json")
    command.add_argument("--prometheus", metavar="URL", help="Prometheus to read (default: the model's DriftPolicy's)")
    command.add_argument("--prometheus-token-file", metavar="PATH", help="file holding a bearer token for Prometheus")
    command.add_argument(
        "--scrape-interval",
        type=_duration,
        default="30s",
        help="Prometheus' scrape interval: rates are taken over four of them at least (%(default)s)",
    )
    command.add_argument(
        "--notify",
        default=os.environ.get("RELEARN_REPORT_WEBHOOK_URL", ""),
        metavar="URL",
        help="POST the summary and the report's location here (env RELEARN_REPORT_WEBHOOK_URL; never printed)",
    )
    command.add_argument("--notify-format", choices=("json", "slack"), default="json", help="webhook body format")
    command.add_argument(
        "--allowed-webhook-host",
        action="append",
        default=_env_list("RELEARN_ALLOWED_WEBHOOK_HOSTS"),
        metavar="HOST",
        help="only notify this host or *.domain (repeatable; default: any)",
    )

    command = commands.add_parser("status", help="the registry at a glance: champion, challenger, decisions, drift")
    command.add_argument("models", nargs="*", metavar="MODEL", help="models to show (default: every model)")
    _cluster_arguments(command)

    command = commands.add_parser(
        "rollback", help="revert a model to its previous champion (annotation relearn.dev/rollback)"
    )
    command.add_argument("model", help="model name (ModelVersion spec.model)")
    command.add_argument("--to", metavar="VERSION", help="the version to return to (default: the previous champion)")
    _cluster_arguments(command)

    for plugin in _plugins():  # relearn-sandbox's `relearn demo` and `relearn sandbox`
        plugin(commands, absolute_path)

    validate = commands.add_parser(
        "validate", help="check Relearn CRs in YAML files against the CRDs and the operator's rules"
    )
    validate.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders of YAML")
    return parser


def absolute_path(text: str) -> Path:
    """A folder argument, made absolute against the working directory where the command runs: pods and
    libraries run elsewhere (the sandbox's pods in their own folders) and must get the same place."""
    return Path(text).expanduser().resolve()


def _plugins() -> list[Callable[..., None]]:
    """Commands other distributions add to ``relearn`` (entry point group
    ``relearn.cli``): each is called with the subcommands and the folder
    argument type, and sets ``plugin_main`` on the commands it adds. The
    operator never imports them otherwise."""
    found = []
    for entry in sorted(entry_points(group=PLUGIN_GROUP), key=lambda e: e.name):
        try:
            found.append(entry.load())
        except ImportError as error:  # a plugin whose own dependencies are missing: the rest still works
            logging.getLogger("relearn").warning("relearn: the %s commands cannot load: %s", entry.name, error)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] and arguments[0] in SANDBOX_COMMANDS and not entry_points(group=PLUGIN_GROUP):
        print(
            f"relearn {arguments[0]}: the sandbox is not installed; it is its own distribution, "
            "relearn-sandbox (from a Relearn checkout: pip install ./sandbox, or make setup)",
            file=sys.stderr,
        )
        return 2
    args = build_parser().parse_args(arguments)
    if args.command == "crds":
        from relearn.api.schema import all_crds_yaml

        sys.stdout.write(all_crds_yaml())
        return 0
    if args.command in ("promote", "abort", "rollback"):
        return _decide(args)
    if args.command == "validate":
        return _validate(args.paths)
    if args.command == "report":
        return _report(args)
    if args.command == "status":
        return _status(args)
    if getattr(args, "plugin_main", None) is not None:
        return int(args.plugin_main(args))
    return _run(args)


def _decide(args: argparse.Namespace) -> int:
    from relearn import commands

    try:
        target = commands.connect(args.namespace, args.kubeconfig)
        if args.command == "rollback":
            print(commands.rollback(target, args.model, args.to))
        else:
            action = commands.promote if args.command == "promote" else commands.abort
            print(action(target, args.experiment))
    except commands.Refused as refusal:
        print(f"relearn {args.command}: {refusal}", file=sys.stderr)
        return 1
    return 0


def _cluster_arguments(command: argparse.ArgumentParser) -> None:
    """Where a person's command reaches the cluster (``relearn.adapters.kube.connect``)."""
    command.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's)")
    command.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")


def _env_list(variable: str) -> list[str]:
    """A comma-separated environment variable's items (the default of a repeatable option)."""
    return [item for item in os.environ.get(variable, "").split(",") if item]


def _duration(text: str) -> datetime.timedelta:
    from relearn.core.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _report(args: argparse.Namespace) -> int:
    import asyncio

    from kubernetes.client import ApiException

    from relearn import commands, reporting
    from relearn.core.consent import UseRefused
    from relearn.reporting import render

    token = Path(args.prometheus_token_file).read_text().strip() if args.prometheus_token_file else None
    try:
        target = commands.connect(args.namespace, args.kubeconfig)
        reports = asyncio.run(
            reporting.generate(
                target,
                args.models,
                args.since,
                args.prometheus,
                token,
                scrape_interval=args.scrape_interval.total_seconds(),
            )
        )
    except (ApiException, OSError) as error:
        print(f"relearn report: cannot read the registry: {getattr(error, 'reason', None) or error}", file=sys.stderr)
        return 1
    now = datetime.datetime.now(datetime.UTC)
    content = render.to_json(reports) if args.format == "json" else render.to_html(reports, now)
    output = args.output.replace("{namespace}", target.namespace).replace("{date}", now.strftime("%Y-%m-%d"))
    try:
        location = reporting.write(output, content)
    except OSError as error:
        print(f"relearn report: cannot write {args.output}: {error}", file=sys.stderr)
        return 1
    summary = "\n".join(render.summary(r) for r, _ in reports) or f"no model in {target.namespace}"
    print(summary)
    print(f"report written to {location}")
    if args.notify:
        try:
            reporting.notify(args.notify, summary, location, args.notify_format, args.allowed_webhook_host)
        except (OSError, UseRefused) as error:
            print(f"relearn report: {error}", file=sys.stderr)
            return 1
        print("summary posted to the webhook")
    return 0


def _status(args: argparse.Namespace) -> int:
    from kubernetes.client import ApiException

    from relearn import commands
    from relearn.reporting import status

    try:
        target = commands.connect(args.namespace, args.kubeconfig)
        print(status.table(target, args.models), end="")
    except (ApiException, OSError) as error:
        print(f"relearn status: cannot read the registry: {getattr(error, 'reason', None) or error}", file=sys.stderr)
        return 1
    return 0


def _validate(paths: list[Path]) -> int:
    from relearn.validation import validate_paths

    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"relearn validate: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    verdicts = validate_paths(paths)
    for verdict in verdicts:
        label = f"{verdict.source}: {verdict.kind}/{verdict.name}"
        print(f"{label}: ok" if verdict.valid else f"{label}: INVALID")
        for error in verdict.errors:
            print(f"    {error}")
    invalid = sum(not v.valid for v in verdicts)
    print(f"{len(verdicts)} objects, {invalid} invalid")
    return 1 if invalid else 0


def _run(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    from relearn import allocator
    from relearn.core.sharding import parse_shard
    from relearn.handlers import build_registry

    allocator.limit_arenas()  # before any thread starts (relearn.allocator)

    log_format = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}
    kopf.configure(verbose=args.verbose, log_format=log_format[args.log_format])
    os.environ["RELEARN_PROMETHEUS_URL"] = args.prometheus_url  # read at start-up into the handlers' memo
    os.environ["RELEARN_ALLOWED_PROMETHEUS_URLS"] = ",".join(args.allowed_prometheus_url)
    os.environ["RELEARN_ALLOWED_WEBHOOK_HOSTS"] = ",".join(args.allowed_webhook_host)
    os.environ["RELEARN_NAMESPACES"] = ",".join(args.namespace)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    shard = parse_shard(args.shard)
    logging.getLogger("relearn").info(
        "starting relearn %s (namespaces: %s, peering: %s, shard: %s)",
        __version__,
        ",".join(args.namespace) or "all",
        args.peering or "standalone",
        shard,
    )
    kopf.run(
        registry=build_registry(shard),
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness or None,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
