"""Object writes per second through the sandbox API server, with 50 open
watches, against a baseline with none measured in the same run.

    .venv/bin/python bench/sandbox_api.py [--writes 1500] [--watches 50] [--writers 8]

The sandbox runs in its own process (`relearn sandbox serve`, no Prometheus),
as it does for the operator; this process drives it over loopback with
aiohttp. Each phase creates `--writes` ConfigMaps from `--writers`
concurrent clients and checks that every watch saw every write. Bounded: it
stops after the writes or 300 s, and stops the sandbox it started.
Target (issue 3): >= 300 writes/s with 50 watches on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp


async def watch(
    session: aiohttp.ClientSession, url: str, expected: int, ready: asyncio.Event, started: asyncio.Event
) -> int:
    seen = 0
    async with session.get(url, params={"watch": "true", "timeoutSeconds": "300"}) as response:
        started.set()
        ready.set()
        async for line in response.content:
            if line.strip() and json.loads(line)["type"] == "ADDED":
                seen += 1
                if seen == expected:
                    break
    return seen


async def phase(api: str, namespace: str, writes: int, watches: int, writers: int) -> tuple[float, list[int]]:
    timeout = aiohttp.ClientTimeout(total=300)
    connector = aiohttp.TCPConnector(limit=watches + writers + 4)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await session.post(f"{api}/api/v1/namespaces", json={"metadata": {"name": namespace}})
        collection = f"{api}/api/v1/namespaces/{namespace}/configmaps"
        ready, started = asyncio.Event(), [asyncio.Event() for _ in range(watches)]
        watchers = [asyncio.create_task(watch(session, collection, writes, ready, s)) for s in started]
        await asyncio.gather(*(s.wait() for s in started))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(writes):
            queue.put_nowait(i)

        async def writer() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"metadata": {"name": f"cm-{i}", "labels": {"bench": "true"}}, "data": {"i": str(i)}}
                async with session.post(collection, json=body) as response:
                    assert response.status == 201, await response.text()

        began = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.perf_counter() - began
        seen = await asyncio.wait_for(asyncio.gather(*watchers), 120)
        return writes / elapsed, list(seen)


def start_sandbox(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "relearn", "sandbox", "serve", "--dir", str(directory), "--no-prometheus"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    state = json.loads(process.stdout.readline())
    return process, state["api"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=1500)
    parser.add_argument("--watches", type=int, default=50)
    parser.add_argument("--writers", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, api = start_sandbox(Path(tmp))
        try:
            baseline, _ = asyncio.run(phase(api, "bench-baseline", args.writes, 0, args.writers))
            loaded, seen = asyncio.run(phase(api, "bench-watched", args.writes, args.watches, args.writers))
        finally:
            process.terminate()
            process.wait(30)
    complete = all(s == args.writes for s in seen)
    print(f"baseline (0 watches):      {baseline:7.0f} writes/s")
    print(f"with {args.watches} watches:          {loaded:7.0f} writes/s")
    print(f"ratio watched/baseline:    {loaded / baseline:7.2f}")
    print(f"every watch saw every write: {complete} ({min(seen)}..{max(seen)} of {args.writes})")
    print(f"target >= 300 writes/s with {args.watches} watches: {'met' if loaded >= 300 else 'NOT met'}")
    return 0 if complete else 1


if __name__ == "__main__":
    raise SystemExit(main())
