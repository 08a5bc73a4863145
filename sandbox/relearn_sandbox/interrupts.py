"""Ctrl-C that always stops the demo.

Python raises KeyboardInterrupt where the main thread happens to be when
SIGINT arrives, and a few places drop it: a callback run after a fork (the
logging module's, while ``subprocess`` starts a child with a
``preexec_fn``) prints "Exception ignored in ..." and goes on. The demo
would then carry on for minutes after the person asked it to stop.
:class:`Interrupts` makes the request stick: once SIGINT arrives,
KeyboardInterrupt is raised again every second until the demo says its
clean-up has begun (:meth:`Interrupts.settle`).
"""

from __future__ import annotations

import _thread
import signal
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["REPEAT", "Interrupts"]

REPEAT = 1.0  # seconds between two raises of a pending interrupt


class Interrupts:
    """While entered (in the main thread; elsewhere it does nothing), SIGINT
    raises KeyboardInterrupt and keeps raising it until :meth:`settle`."""

    def __init__(self, repeat: float = REPEAT) -> None:
        self.repeat = repeat
        self.requested = threading.Event()
        self._settled = threading.Event()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
            self._installed = True
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.settle()
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def settle(self) -> None:
        """The clean-up has begun: a pending interrupt is not raised again
        (a new Ctrl-C still raises once, as usual)."""
        self._settled.set()

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if not self.requested.is_set() and not self._settled.is_set():
            self.requested.set()
            threading.Thread(target=self._raise_again, name="relearn-interrupt", daemon=True).start()
        raise KeyboardInterrupt

    def _raise_again(self) -> None:
        while not self._settled.wait(self.repeat):
            _thread.interrupt_main(signal.SIGINT)  # runs _on_sigint in the main thread: raises again
