"""The trainer under ``torchrun``: data-parallel (DDP) or sharded (FSDP)
training over several processes, nodes or GPUs, with the same CLI.

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them (one
process) everything here is a no-op. The process group uses NCCL on GPUs and
gloo on CPU. Every rank reads the same data and shuffles it the same way,
and takes its share of each batch; rank 0 alone checks the output, evaluates,
checkpoints, publishes and writes the result (the others wait for its word
and exit 0, or fail with it). A SIGTERM on any rank stops all of them at the
same step (:func:`any_rank`), so the checkpoint is one step for all.
Called by :mod:`relearn_trainer.training`, :mod:`relearn_trainer.pipeline`
and the CLI.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import torch
import torch.distributed as dist

from relearn_trainer import rendezvous
from relearn_trainer.failures import UsageError

Strategy = Literal["ddp", "fsdp"]
T = TypeVar("T")
# Rank 0 evaluates the champion before training and the new version after it
# while the others wait in a collective: longer than that, a peer is lost.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    strategy: Strategy = "ddp"

    @property
    def main(self) -> bool:
        """Rank 0: the one that publishes."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


SINGLE = Ranks()


def from_environment(strategy: Strategy = "ddp") -> Ranks:
    """The ranks torchrun gives this process (one process without torchrun)."""
    try:
        return Ranks(
            int(os.environ.get("RANK", "0")),
            int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")),
            strategy,
        )
    except ValueError:
        return Ranks(strategy=strategy)


def start(ranks: Ranks) -> torch.device:
    """Join the process group (when torchrun started several); this rank's device."""
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{ranks.local_rank}" if cuda and ranks.active else ("cuda" if cuda else "cpu"))
    if ranks.active and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
        if ranks.main:
            # Every rank joined: a replacement worker must wait for the next attempt.
            rendezvous.mark_running()
    return device


def finish() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def share(batch: Sequence[T], ranks: Ranks) -> Sequence[T]:
    """This rank's part of a batch (every rank does a step: at least one example)."""
    if not ranks.active:
        return batch
    return batch[ranks.rank :: ranks.world] or batch[-1:]


def any_rank(flag: bool, ranks: Ranks, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (SIGTERM reaches pods one by one)."""
    if not ranks.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def from_main(value: T | None, ranks: Ranks) -> T | None:
    """Rank 0's ``value`` on every rank (a checkpoint it read, its outcome)."""
    if not ranks.active:
        return value
    box: list[Any] = [value if ranks.main else None]
    dist.broadcast_object_list(box, src=0)
    result: T | None = box[0]
    return result


def wrap(model: Any, ranks: Ranks, device: torch.device) -> Any:
    """The module the training loop calls: the model itself, DDP's replica
    (gradients averaged across ranks) or FSDP's shards (parameters, gradients
    and optimizer state split across ranks; ``use_orig_params`` for LoRA's mix
    of frozen and trained weights)."""
    if not ranks.active:
        return model
    if ranks.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        if device.type != "cuda":
            raise UsageError("--strategy fsdp needs GPUs (PyTorch's FSDP has no CPU path): use ddp on CPU")

        return FullyShardedDataParallel(
            model, use_orig_params=True, device_id=device if device.type == "cuda" else None
        )
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def full_parameters(wrapped: Any, ranks: Ranks) -> Iterator[None]:
    """Within it, the model's whole parameters are on every rank (FSDP
    gathers its shards; a collective: every rank enters), to save or evaluate."""
    if ranks.active and ranks.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        with FullyShardedDataParallel.summon_full_params(wrapped, writeback=False):
            yield
        return
    yield


def optimizer_state(wrapped: Any, optimizer: torch.optim.Optimizer, ranks: Ranks) -> dict[str, Any]:
    """The optimizer's whole state, to checkpoint (FSDP's is gathered: every rank calls this)."""
    if ranks.active and ranks.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        state: dict[str, Any] = FullyShardedDataParallel.optim_state_dict(wrapped, optimizer)
        return state
    return optimizer.state_dict()


def load_optimizer_state(wrapped: Any, optimizer: torch.optim.Optimizer, state: dict[str, Any], ranks: Ranks) -> None:
    if ranks.active and ranks.strategy == "fsdp":
        from torch.distributed.fsdp import FullyShardedDataParallel

        state = FullyShardedDataParallel.optim_state_dict_to_load(wrapped, optimizer, state)
    optimizer.load_state_dict(state)
