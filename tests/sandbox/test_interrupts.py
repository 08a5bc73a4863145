"""Ctrl-C stops the demo even when Python drops the KeyboardInterrupt it
raised (relearn_sandbox.interrupts)."""

from __future__ import annotations

import os
import signal
import time

import pytest
from relearn_sandbox.interrupts import Interrupts


def interrupted_self() -> None:
    """Ctrl-C, as a person presses it: SIGINT to this process, while it works."""
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(1)


def dropped_then_going_on(raised: list[float]) -> None:
    """A KeyboardInterrupt dropped (as an after-fork callback drops it), then the demo's next step."""
    try:
        interrupted_self()
    except KeyboardInterrupt:
        raised.append(time.monotonic())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_interrupt_python_dropped_is_raised_again_until_the_clean_up_begins() -> None:
    raised: list[float] = []
    with Interrupts(repeat=0.2) as interrupts, pytest.raises(KeyboardInterrupt):
        dropped_then_going_on(raised)
    assert raised, "SIGINT raised nothing"
    assert interrupts.requested.is_set()


def test_once_the_clean_up_has_begun_a_pending_interrupt_is_not_raised_again() -> None:
    with Interrupts(repeat=0.1) as interrupts:
        with pytest.raises(KeyboardInterrupt):
            interrupted_self()
        interrupts.settle()
        time.sleep(0.5)  # five repeats' time: none comes, so the clean-up runs to its end
    assert signal.getsignal(signal.SIGINT) is not interrupts._on_sigint  # the previous handler is back
