"""``python -m relearn_trainer.rendezvous <torchrun arguments>``: torchrun,
once worker 0 is not still running an earlier attempt.

A distributed retraining is an Indexed Job whose pods meet at worker 0
(torchrun's static rendezvous: worker 0's launcher holds the store at
``--master-addr``/``--master-port``). When one worker is lost, the others'
collectives fail and they exit too, and the Job replaces every failed pod.
But the replacement of the lost worker can start before worker 0 has
noticed: its launcher would then join worker 0's *running* attempt, whose
store already says the rendezvous is complete, and its trainer would wait
for ever on peers that are gone (seen as a retraining that never ended).

So a worker other than 0 first asks worker 0's store whether an attempt is
running there (the key rank 0 sets once every rank joined, see
:func:`mark_running`); while it is, it waits (printing why, once), and it
starts torchrun when nothing listens yet (torchrun then waits for worker 0
itself) or worker 0 listens afresh. Worker 0 starts at once: it holds the
store. Without ``--node-rank`` above 0 (one node, a bench) it is plain
torchrun.
"""

from __future__ import annotations

import datetime
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence

ATTEMPT_KEY = "relearn/attempt-running"
PROBE_TIMEOUT = datetime.timedelta(seconds=5)
# As long as a collective may wait on rank 0 (relearn_trainer.distributed.TIMEOUT).
WAIT_LIMIT = datetime.timedelta(hours=2)


def attempt_running(host: str, port: int, timeout: datetime.timedelta = PROBE_TIMEOUT) -> bool:
    """Whether worker 0's store at ``host:port`` holds an attempt under way;
    False when nothing listens there (a new worker 0 is not up yet)."""
    try:  # a plain connection first: TCPStore would log its failed tries loudly
        socket.create_connection((host, port), timeout=timeout.total_seconds()).close()
    except OSError:
        return False
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # public, not re-exported in stubs

    try:
        store = TCPStore(host, port, is_master=False, timeout=timeout, wait_for_workers=False)
    except (RuntimeError, TimeoutError, OSError):  # DistNetworkError and DistStoreError are RuntimeErrors
        return False
    try:
        return bool(store.check([ATTEMPT_KEY]))
    except (RuntimeError, TimeoutError, OSError):
        return False  # it went away while asked: that attempt is over


def wait_for_a_fresh_attempt(
    host: str,
    port: int,
    *,
    limit: datetime.timedelta = WAIT_LIMIT,
    poll: float = 1.0,
    running: Callable[[str, int], bool] = attempt_running,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> float:
    """Block while worker 0 at ``host:port`` runs an earlier attempt; the
    seconds waited. Raises TimeoutError past ``limit`` (the pod fails and the
    Job retries it)."""
    started = time.monotonic()
    told = False
    while running(host, port):
        waited = time.monotonic() - started
        if waited > limit.total_seconds():
            raise TimeoutError(f"worker 0 ({host}:{port}) still runs an earlier attempt after {waited:.0f}s; giving up")
        if not told:
            say(
                f"worker 0 ({host}:{port}) still runs an earlier attempt (a worker of it was lost); "
                "waiting for it to end before joining the next one"
            )
            told = True
        time.sleep(poll)
    return time.monotonic() - started


def mark_running() -> None:
    """On rank 0, once every rank joined: tell later joiners this attempt is under way.

    Under torchrun, ``MASTER_ADDR``/``MASTER_PORT`` are worker 0's launcher's
    store (it outlives rank 0 by moments only); without them, nothing to mark."""
    host, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    if not host or not port or not port.isdecimal():
        return
    from torch.distributed import TCPStore  # type: ignore[attr-defined]  # public, not re-exported in stubs

    store = TCPStore(host, int(port), is_master=False, timeout=PROBE_TIMEOUT, wait_for_workers=False)
    store.set(ATTEMPT_KEY, "1")


def main(argv: Sequence[str] | None = None) -> None:
    from torch.distributed import run

    arguments = list(sys.argv[1:] if argv is None else argv)
    options = run.parse_args(arguments)  # type: ignore[no-untyped-call]
    if int(options.node_rank) > 0 and options.master_addr and options.master_port:
        wait_for_a_fresh_attempt(options.master_addr, int(options.master_port))
    run.main(arguments)


if __name__ == "__main__":
    main()
