"""The operator process's heap: glibc's malloc, set for a long-running
asyncio process whose API calls run in worker threads.

- :func:`limit_arenas`: glibc gives each thread that allocates its own arena
  (up to eight per core), and memory freed in one arena is not reused by
  another; the operator's worker threads (the Kubernetes client's calls,
  JSON decoding) would each keep their share of the start-up burst. Two
  arenas serve these threads as fast (they mostly wait on the network). The
  same as ``MALLOC_ARENA_MAX=2``, set by the process itself, so the chart,
  the image and ``relearn run`` on a laptop get it alike.
- :func:`trim` / :func:`keep_trimming`: return the heap's free pages to the
  system (``malloc_trim``) after bursts such as the start-up's first lists
  and checks of a thousand objects, so RSS follows what is in use.

Neither exists outside glibc (macOS, musl): there both do nothing and say so.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
import os

__all__ = ["ARENAS", "TRIM_INTERVAL", "keep_trimming", "limit_arenas", "trim"]

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)
ARENAS = 2
TRIM_INTERVAL = 60.0  # seconds between two trims of the heap


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas (call before threads start); whether
    it took. A ``MALLOC_ARENA_MAX`` the person set wins: left as it is."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas) == 1)


def trim() -> bool:
    """Give the heap's free pages back to the system; whether any were."""
    libc = _glibc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)


async def keep_trimming(interval: float = TRIM_INTERVAL) -> None:
    """:func:`trim` every ``interval`` seconds, until cancelled."""
    if _glibc() is None:
        logger.info("not glibc: the heap is not trimmed")
        return
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(trim)  # a large heap's walk stays off the event loop
