"""``relearn sandbox up|down|status|serve``: the sandbox as a background
process the user starts once and points kubectl at.

``serve`` runs the sandbox in the foreground until SIGTERM or Ctrl-C and
keeps ``state.json`` (pid, URLs, kubeconfig) in its folder while it runs;
``up`` starts ``serve`` detached and waits until it is ready; ``down`` stops
it; ``status`` says whether it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from relearn_sandbox.cluster import Sandbox, SandboxConfig
from relearn_sandbox.processes import die_with_parent

DEFAULT_DIR = Path(".relearn/sandbox")


def state_file(directory: Path) -> Path:
    return directory / "state.json"


def alive(pid: int) -> bool:
    """Whether a process runs; reaps it first when it is our own exited child
    (``relearn demo`` starts the sandbox itself), which would else linger as
    a zombie that ``kill(pid, 0)`` still finds."""
    with contextlib.suppress(ChildProcessError):
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def read_state(directory: Path) -> dict[str, Any] | None:
    """The running sandbox's state, or None when none runs from this folder."""
    try:
        state: dict[str, Any] = json.loads(state_file(directory).read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        running = alive(int(state["pid"]))
    except (KeyError, ValueError):
        running = False
    if not running:
        state_file(directory).unlink(missing_ok=True)
        return None
    return state


async def serve(config: SandboxConfig) -> None:
    sandbox = Sandbox(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await sandbox.start()
    state = {
        "pid": os.getpid(),
        "api": sandbox.api_url,
        "gateway": sandbox.gateway_url,
        "prometheus": sandbox.prometheus_url,
        "kubeconfig": str(sandbox.kubeconfig.resolve()),
    }
    temporary = state_file(config.workdir).with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2))
    temporary.replace(state_file(config.workdir))
    print(json.dumps(state), flush=True)
    try:
        await stop.wait()
    finally:
        state_file(config.workdir).unlink(missing_ok=True)
        await sandbox.stop()


def up(directory: Path, serve_args: list[str], timeout: float = 90.0, with_parent: bool = False) -> dict[str, Any]:
    """Start ``relearn sandbox serve`` detached; return its state once ready. ``with_parent``: it
    stops (SIGTERM, cleaning up its pods) when this process dies, even by SIGKILL."""
    directory = directory.resolve()
    running = read_state(directory)
    if running is not None:
        return running
    directory.mkdir(parents=True, exist_ok=True)
    log = (directory / "sandbox.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "relearn", "sandbox", "serve", "--dir", str(directory), *serve_args],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent if with_parent else None,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(directory)
        if state is not None and state["pid"] == process.pid:
            return state
        if process.poll() is not None:
            tail = (directory / "sandbox.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the sandbox exited with {process.returncode}:\n{tail}")
        time.sleep(0.2)
    process.terminate()
    raise TimeoutError(f"the sandbox was not ready within {timeout:.0f}s; see {directory / 'sandbox.log'}")


def down(directory: Path, timeout: float = 30.0) -> bool:
    """Stop the sandbox of this folder; False when none was running."""
    state = read_state(directory)
    if state is None:
        return False
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def healthy(state: dict[str, Any]) -> bool:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # health only; clients verify with the kubeconfig's CA
    try:
        with urllib.request.urlopen(f"{state['api']}/healthz", timeout=2, context=context) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
