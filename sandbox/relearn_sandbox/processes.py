"""Child processes of the sandbox and the demo: free ports, a parent-death
signal, stopping a process group, and starting the operator.

Used by the kubelet (pods), the Prometheus launcher, ``relearn demo`` and the
integration tests, so each does these things the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """In a child before exec: receive SIGTERM when the sandbox's thread dies,
    so no process outlives a sandbox that was killed without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def descendants(pid: int) -> list[int]:
    """A process's descendants (from /proc): a container's processes that
    left its process group, as torchrun's workers do (sessions of their own)."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdecimal():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int, sig: int = signal.SIGKILL, also: Sequence[int] = ()) -> None:
    """``sig`` to a process group and every descendant (and ``also``), as a
    container runtime stops a whole container."""
    for target in [*descendants(pid), *also]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, sig)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


async def terminate_group(process: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM a child's process group, then SIGKILL after ``grace`` seconds
    (its descendants too, wherever they went)."""
    if process.returncode is not None:
        return
    tree = descendants(process.pid)  # before they are orphaned
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that arrives as the process exits, and the kubelet's
        # worker, cancelled at shutdown, would then wait on forever.
        async with asyncio.timeout(max(grace, 0.1)):
            await process.wait()
    except TimeoutError:
        kill_tree(process.pid, also=tree)
        await process.wait()


def start_operator(
    kubeconfig: Path,
    namespaces: Sequence[str],
    log_path: Path,
    timeout: float = 60.0,
    with_parent: bool = False,
    metrics_port: int = 0,
) -> subprocess.Popen[bytes]:
    """``relearn run`` for these namespaces, returned once it answers its liveness probe;
    ``with_parent``: it gets SIGTERM when this process dies, however it dies;
    ``metrics_port``: where it serves its metrics on loopback (0: nowhere)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "relearn",
        "run",
        f"--liveness=http://127.0.0.1:{port}/healthz",
        f"--metrics-port={metrics_port}",
        "--metrics-address=127.0.0.1",
        "--log-format=json",
    ]
    command += [f"--namespace={namespace}" for namespace in namespaces]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, "KUBECONFIG": str(kubeconfig)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if with_parent else None,
        )
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the operator exited with {process.returncode}; see {log_path}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return process
            except OSError:
                time.sleep(0.2)
    except BaseException:  # interrupted (Ctrl-C) while it starts: the caller has no handle to stop it with
        stop_operator(process, timeout=10.0)
        raise
    stop_operator(process)
    raise TimeoutError(f"the operator did not answer its liveness probe in {timeout:.0f}s; see {log_path}")


def stop_operator(process: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM the operator (kopf stops cleanly on it); its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()
