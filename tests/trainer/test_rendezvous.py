"""A lost worker's replacement waits for worker 0's attempt to end instead
of joining it (``python -m relearn_trainer.rendezvous``, the launcher of a
distributed retraining's pods), then meets the next worker 0 and runs.

Two torchrun nodes on loopback with a tiny gloo script (this file, run with
``--worker``): rank 0 sits outside any collective until told, as it does
while it evaluates, so it cannot notice the loss; plain torchrun would join
its finished rendezvous and hang."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from relearn_sandbox.processes import free_port, kill_tree
from relearn_trainer import rendezvous

WAITING = "still runs an earlier attempt"


class Node:
    """One torchrun node under the launcher, its output read as it comes."""

    def __init__(self, rank: int, port: int, release: Path) -> None:
        command = [
            sys.executable,
            "-m",
            "relearn_trainer.rendezvous",
            "--nnodes=2",
            "--nproc-per-node=1",
            f"--node-rank={rank}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            "--max-restarts=0",
            __file__,
            "--worker",
            str(release),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def await_line(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.seen):
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} within {timeout:.0f}s:\n{''.join(self.seen)}"
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            assert line is not None, f"ended before {text!r}:\n{''.join(self.seen)}"
            self.seen.append(line)

    def finish(self, timeout: float = 120) -> int:
        code = self.process.wait(timeout=timeout)
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return code

    def kill(self) -> None:
        """SIGKILL the launcher and its workers (torchrun's workers have sessions of their own)."""
        kill_tree(self.process.pid)
        self.process.wait(timeout=30)


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.process.poll() is None:
            node.kill()


def test_a_replacement_worker_waits_for_the_stale_attempt_then_meets_the_next_worker_zero(
    tmp_path: Path, nodes: list[Node]
) -> None:
    port, release = free_port(), tmp_path / "release"
    first = [Node(0, port, release), Node(1, port, release)]
    nodes += first
    for node in first:
        node.await_line("joined")

    first[1].kill()  # lost, as to an out-of-memory kill: worker 0 is outside a collective and cannot tell
    replacement = Node(1, port, release)
    nodes.append(replacement)
    replacement.await_line(WAITING)
    assert not any("joined" in line for line in replacement.seen)

    release.touch()  # worker 0 reaches its next collective, finds its peer gone and fails
    assert first[0].finish() != 0
    worker_zero = Node(0, port, release)
    nodes.append(worker_zero)
    assert worker_zero.finish() == 0, "".join(worker_zero.seen)
    assert replacement.finish() == 0, "".join(replacement.seen)
    assert sum(WAITING in line for line in replacement.seen) == 1  # said once, not per poll
    assert any("done" in line for line in replacement.seen)


def test_the_wait_ends_when_worker_zero_is_gone_and_is_bounded() -> None:
    answers = iter([True, True, False])
    said: list[str] = []
    waited = rendezvous.wait_for_a_fresh_attempt("w0", 1, poll=0, running=lambda h, p: next(answers), say=said.append)
    assert waited >= 0
    assert len(said) == 1  # said once, not per poll
    assert "w0:1" in said[0]
    with pytest.raises(TimeoutError, match="still runs an earlier attempt"):
        rendezvous.wait_for_a_fresh_attempt(
            "w0", 1, limit=rendezvous.datetime.timedelta(0), poll=0, running=lambda h, p: True, say=said.append
        )


def test_nothing_listening_is_no_attempt_under_way() -> None:
    assert rendezvous.attempt_running("127.0.0.1", free_port()) is False


def _worker(release: Path) -> None:
    import datetime

    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(minutes=10))
    if dist.get_rank() == 0:
        rendezvous.mark_running()
    value = torch.ones(1)
    dist.all_reduce(value)
    print(f"rank {dist.get_rank()} joined", flush=True)
    if dist.get_rank() == 0:
        while not release.exists():  # outside any collective, as while evaluating
            time.sleep(0.1)
    for _ in range(5):  # a lost peer may have sent its part of the first already: the next fails
        dist.all_reduce(value)
    print(f"rank {dist.get_rank()} done", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    _worker(Path(sys.argv[2]))
