"""Load generators through the sandbox's gateway, each a process of its own
so the gateway in the test process keeps its CPU.

    python -m relearn_sandbox.servers.load feedback GATEWAY HOST TOTAL SECONDS
    python -m relearn_sandbox.servers.load paired   GATEWAY HOST TOTAL SECONDS
    python -m relearn_sandbox.servers.load sticky   GATEWAY HOST CLIENTS REQUESTS
    python -m relearn_sandbox.servers.load paced    GATEWAY HOST RATE OUT

- ``feedback``: labelled feedback posts from 4 threads, ``TOTAL`` in all (0:
  until ``SECONDS`` pass); prints the backends that answered
  (``X-Relearn-Backend``) and the statuses, as JSON.
- ``paired``: each request (with an ``id``) followed by its label and the
  answer the client got; prints the versions and backends that answered.
- ``sticky``: ``CLIENTS`` clients that keep their cookies, ``REQUESTS`` GETs
  each; prints each client's versions in order.
- ``paced``: ``RATE`` feedback posts a second until stdin closes, every one
  recorded as a JSON line ``[sent, answered, status or 0, backend]`` in ``OUT``.
"""

from __future__ import annotations

import collections
import http.client
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

THREADS = 4
FEEDBACK = b'{"input": "x", "label": "a"}'


def connect(gateway: str) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(gateway.split("//", 1)[1], timeout=10)


def post(connection: http.client.HTTPConnection, host: str, path: str, body: bytes) -> http.client.HTTPResponse:
    connection.request("POST", path, body=body, headers={"Host": host, "Content-Type": "application/json"})
    return connection.getresponse()


def run_threads(work: Callable[[], None], count: int = THREADS) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class Budget:
    """``total`` requests (0: no limit) until ``seconds`` pass, shared by the threads."""

    def __init__(self, total: int, seconds: float) -> None:
        self.total, self.deadline, self.sent, self.lock = total, time.monotonic() + seconds, 0, threading.Lock()

    def take(self) -> bool:
        with self.lock:
            if time.monotonic() >= self.deadline or (self.total and self.sent >= self.total):
                return False
            self.sent += 1
            return True


def feedback(gateway: str, host: str, total: int, seconds: float) -> dict[str, Any]:
    budget, lock = Budget(total, seconds), threading.Lock()
    backends: collections.Counter[str] = collections.Counter()
    statuses: collections.Counter[int] = collections.Counter()

    def work() -> None:
        connection = connect(gateway)
        while budget.take():
            try:
                response = post(connection, host, "/feedback", FEEDBACK)
                response.read()
                with lock:
                    backends[response.getheader("X-Relearn-Backend", "none")] += 1
                    statuses[response.status] += 1
            except OSError:
                connection.close()
                connection = connect(gateway)
                time.sleep(0.05)

    run_threads(work)
    return {"backends": backends, "statuses": statuses}


def paired(gateway: str, host: str, total: int, seconds: float) -> dict[str, Any]:
    budget, lock = Budget(total, seconds), threading.Lock()
    versions: collections.Counter[str] = collections.Counter()
    backends: collections.Counter[str] = collections.Counter()

    def work() -> None:
        connection = connect(gateway)
        while budget.take():
            try:
                request = {"id": uuid.uuid4().hex, "input": "x"}
                response = post(connection, host, "/predict", json.dumps(request).encode())
                answer = json.loads(response.read() or b"{}")
                # the label comes later, with what the client was served
                labelled = {**request, "label": "a", "served": answer}
                post(connection, host, "/feedback", json.dumps(labelled).encode()).read()
                with lock:
                    versions[answer.get("version", "none")] += 1
                    backends[response.getheader("X-Relearn-Backend", "none")] += 1
            except (OSError, ValueError):
                connection.close()
                connection = connect(gateway)
                time.sleep(0.05)

    run_threads(work)
    return {"versions": versions, "backends": backends}


def sticky(gateway: str, host: str, clients: int, requests: int) -> list[list[str]]:
    seen = []
    for _ in range(clients):
        cookies: dict[str, str] = {}  # one browser: it sends back the cookies it was given
        versions = []
        connection = connect(gateway)
        for _ in range(requests):
            headers = {"Host": host}
            if cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            connection.request("GET", "/", headers=headers)
            response = connection.getresponse()
            versions.append(json.loads(response.read())["version"])
            for value in response.headers.get_all("Set-Cookie") or ():
                name, _, rest = value.partition("=")
                cookies[name.strip()] = rest.split(";", 1)[0]
        seen.append(versions)
    return seen


def paced(gateway: str, host: str, rate: float, out: str) -> None:
    lock, stop = threading.Lock(), threading.Event()
    with open(out, "a", buffering=1) as sink:

        def work(offset: int) -> None:
            connection = connect(gateway)
            period = THREADS / rate
            next_at = time.monotonic() + offset * period / THREADS
            while not stop.is_set():
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += period
                sent = time.time()
                status, backend = 0, "none"
                try:
                    response = post(connection, host, "/feedback", FEEDBACK)
                    body = response.read()
                    status, backend = response.status, response.getheader("X-Relearn-Backend", "none")
                    if status != 200:
                        backend = f"{backend}: {body[:80].decode(errors='replace').strip()}"
                except OSError:
                    connection.close()
                    connection = connect(gateway)
                with lock:
                    sink.write(json.dumps([sent, time.time(), status, backend]) + "\n")

        for offset in range(THREADS):
            threading.Thread(target=work, args=(offset,), daemon=True).start()
        try:
            sys.stdin.read()  # runs until stdin closes
        finally:
            stop.set()
            time.sleep(0.5)


def main(argv: list[str]) -> None:
    mode, gateway, host, first, second = argv
    if mode == "feedback":
        print(json.dumps(feedback(gateway, host, int(first), float(second))))
    elif mode == "paired":
        print(json.dumps(paired(gateway, host, int(first), float(second))))
    elif mode == "sticky":
        print(json.dumps(sticky(gateway, host, int(first), int(second))))
    elif mode == "paced":
        paced(gateway, host, float(first), second)
    else:
        raise SystemExit(f"unknown mode {mode!r}: feedback, paired, sticky or paced")


if __name__ == "__main__":
    main(sys.argv[1:])
