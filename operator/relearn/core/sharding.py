"""Which operator shard handles an object: ``relearn run --shard I/N`` (the
chart's ``shards: N``, one Deployment per shard) handles exactly the objects
whose ``namespace/name`` hashes to ``I`` (the first 8 bytes of its SHA-256,
big-endian, modulo ``N``), so every object has one shard and the partition
is the same on every machine, in every release and after any restart.

Pure; used by :mod:`relearn.handlers` (a ``when`` filter on every handler
that acts; the indexes of other objects stay complete in every shard).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from relearn.errors import InvalidSetting

__all__ = ["ALL", "Shard", "parse_shard", "shard_of"]

_SHARD = re.compile(r"^([0-9]+)/([0-9]+)$")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 1024 or not 0 <= self.index < self.count:
            raise InvalidSetting(f"a shard is I/N with 0 <= I < N <= 1024, not {self.index}/{self.count}")

    def owns(self, namespace: str, name: str) -> bool:
        return self.count == 1 or shard_of(namespace, name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


ALL = Shard(0, 1)


def shard_of(namespace: str, name: str, count: int) -> int:
    """The shard (``0 <= shard < count``) of the object ``namespace/name``."""
    if not 1 <= count <= 1024:
        raise InvalidSetting(f"the number of shards must be within 1..1024, not {count}")
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """``"I/N"`` (``""``: the one shard of one, every object)."""
    if not text:
        return ALL
    match = _SHARD.fullmatch(text.strip())
    if match is None:
        raise InvalidSetting(f"a shard is written I/N (for example 0/2), not {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))
