"""Every way a trainer command can fail, with its exit code.

The CLI (:mod:`relearn_trainer.cli`) maps each exception here to its exit
code and writes ``{"error": <reason>, "message": ...}`` to the termination
message file (the operator shows the reason on the DriftPolicy). The codes
are documented in docs/retraining.md; keep the two in step:

==== ================ =====================================================
code reason           when
==== ================ =====================================================
1    InternalError    an unexpected exception (a bug): type and message
2    DatasetError     the data: missing, unreadable, malformed, too little
3    ModelError       the base model or an adapter cannot be loaded
4    ArtifactError    ``serve``: an adapter that does not match its manifest
                      or its ModelVersion's sha256 (refused before loading)
5    OutputError      the output cannot be written (nothing is left staged)
64   UsageError       bad command-line values (argparse's own errors too)
143  Interrupted      SIGTERM (with what was checkpointed, if anything)
==== ================ =====================================================

:class:`StopFlag` turns SIGTERM into :class:`Interrupted` (it lives here, free
of torch, so the CLI can hold it from its first line).
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any


class TrainerFailure(Exception):
    """A failure with a documented exit code and a reason the operator shows."""

    code = 1
    reason = "InternalError"


class DatasetError(TrainerFailure):
    """The dataset cannot give a training run (missing, unreadable, malformed, too small)."""

    code = 2
    reason = "DatasetError"


class ModelError(TrainerFailure):
    """The base model or an adapter cannot be loaded."""

    code = 3
    reason = "ModelError"


class ArtifactError(TrainerFailure):
    """An adapter's files do not match its manifest, or the manifest its ModelVersion's sha256."""

    code = 4
    reason = "ArtifactError"


class OutputError(TrainerFailure):
    """The trained version cannot be published where ``--output`` says."""

    code = 5
    reason = "OutputError"


class UsageError(TrainerFailure):
    """A command-line value that cannot be used (a bad duration, bad JSON, a label list that disagrees)."""

    code = 64
    reason = "UsageError"


class Interrupted(TrainerFailure):
    """SIGTERM stopped the command; the message says what was saved."""

    code = 143
    reason = "Interrupted"


class StopFlag:
    """SIGTERM for a whole command. While the training loop runs
    (``in_loop``) it only sets ``set``: the loop finishes its step and
    checkpoints. In any other stage it raises :class:`Interrupted` at once,
    saying which stage and what a rerun finds (``saved``)."""

    def __init__(self) -> None:
        self.set = False
        self.in_loop = False
        self.stage = "starting"
        self.saved = "nothing was published"
        self._previous: Any = None

    def __enter__(self) -> StopFlag:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.set = True
        if not self.in_loop:
            raise Interrupted(f"SIGTERM while {self.stage}: {self.saved}")
