"""The commands relearn-sandbox adds to ``relearn`` (entry point group
``relearn.cli``, loaded by :mod:`relearn.cli`): ``relearn demo`` (what
``make demo`` runs) and ``relearn sandbox up|serve|down|status``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_commands(commands: Any, absolute_path: Callable[[str], Path]) -> None:
    """Add ``demo`` and ``sandbox`` to the ``relearn`` subcommands."""
    demo = commands.add_parser("demo", help="Relearn in the local sandbox, step by step (what `make demo` runs)")
    demo.add_argument("--dir", type=absolute_path, default=".relearn/demo", help="state folder (%(default)s)")
    demo.add_argument("--keep", action="store_true", help="leave the sandbox and operator running to explore")

    sandbox = commands.add_parser("sandbox", help="a local control plane to try Relearn without a cluster")
    sandbox_commands = sandbox.add_subparsers(dest="sandbox_command", required=True)
    for verb, text in (
        ("up", "start the sandbox in the background and print how to reach it"),
        ("serve", "run the sandbox in the foreground until Ctrl-C"),
        ("down", "stop the sandbox"),
        ("status", "say whether the sandbox runs and where"),
    ):
        command = sandbox_commands.add_parser(verb, help=text)
        command.add_argument("--dir", type=absolute_path, default=".relearn/sandbox", help="state folder (%(default)s)")
        if verb in ("up", "serve"):
            command.add_argument("--api-port", type=int, default=0, help="API server port (default: any free one)")
            command.add_argument("--gateway-port", type=int, default=0, help="gateway port (default: any free one)")
            command.add_argument(
                "--gateway-lag",
                type=float,
                default=0.0,
                help="seconds the gateway learns of route and endpoint changes late, as a real proxy (default 0)",
            )
            command.add_argument("--no-prometheus", action="store_true", help="do not start Prometheus")
            command.add_argument("--secure", action="store_true", help="HTTPS with a generated CA and a bearer token")
        if verb == "up":
            command.add_argument(
                "--example",
                action="store_true",
                help="also write a model to apply by hand (DIR/example: kubectl apply -k DIR/example), "
                "whose traffic drifts so the whole loop runs (needs the trainer extra)",
            )
    demo.set_defaults(plugin_main=_demo)
    sandbox.set_defaults(plugin_main=_sandbox)


def _demo(args: argparse.Namespace) -> int:
    from relearn_sandbox.demo import run_demo

    try:
        return run_demo(args.dir, keep=args.keep)
    except KeyboardInterrupt:
        print("demo interrupted; every process it started has been stopped", file=sys.stderr)
        return 130


def _sandbox(args: argparse.Namespace) -> int:
    from relearn_sandbox import control

    if args.sandbox_command == "serve":
        import asyncio

        from relearn_sandbox.cluster import SandboxConfig
        from relearn_sandbox.prometheus import PrometheusNotInstalled

        config = SandboxConfig(
            workdir=args.dir,
            api_port=args.api_port,
            gateway_port=args.gateway_port,
            gateway_lag=args.gateway_lag,
            prometheus=not args.no_prometheus,
            secure=args.secure,
        )
        try:
            asyncio.run(control.serve(config))
        except PrometheusNotInstalled as error:
            print(f"relearn sandbox: {error}", file=sys.stderr)
            return 1
        return 0
    if args.sandbox_command == "up":
        flags = [
            f"--api-port={args.api_port}",
            f"--gateway-port={args.gateway_port}",
            f"--gateway-lag={args.gateway_lag}",
        ]
        flags += ["--no-prometheus"] * args.no_prometheus + ["--secure"] * args.secure
        try:
            state = control.up(args.dir, flags)
        except (RuntimeError, TimeoutError) as error:
            print(f"relearn sandbox: {error}", file=sys.stderr)
            return 1
        _print_state(state)
        if args.example:
            try:
                from relearn_sandbox.demo_loop import write_example

                example = write_example(args.dir / "example", state)
            except ImportError as error:
                print(f"relearn sandbox: --example needs the trainer extra (torch, transformers, peft): {error}")
                return 1
            except LookupError as error:  # the demo's base model, all-MiniLM-L6-v2, is not installed
                print(f"relearn sandbox: --example: {error}")
                return 1
            print(f"example:     kubectl apply -k {example}   (then: relearn run -n default; kubectl get relearn -w)")
        return 0
    if args.sandbox_command == "down":
        stopped = control.down(args.dir)
        print("sandbox stopped" if stopped else f"no sandbox runs from {args.dir}")
        return 0
    running = control.read_state(args.dir)
    if running is None:
        print(f"no sandbox runs from {args.dir}")
        return 1
    _print_state(running)
    return 0 if control.healthy(running) else 1


def _print_state(state: dict[str, object]) -> None:
    print(f"API server:  {state['api']}")
    print(f"gateway:     {state['gateway']}")
    print(f"prometheus:  {state['prometheus'] or 'not started'}")
    print(f"export KUBECONFIG={state['kubeconfig']}")
