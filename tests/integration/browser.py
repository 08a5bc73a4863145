"""A page opened in headless Chromium as a person opens it, for the tests of
what people look at (the report). Speaks the Chrome DevTools Protocol over
aiohttp's websocket client: loads a file, waits for the load event, collects
every console message, JavaScript exception and failed resource, answers
JavaScript questions about the page and takes a screenshot.

Chromium is started as the machine's guide says (``--headless --no-sandbox
--disable-gpu``, background networking off, a fresh user-data-dir) and
killed when the page is closed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1280,900",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Page:
    socket: aiohttp.ClientWebSocketResponse
    problems: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    _next: int = 0
    _loaded: asyncio.Event = field(default_factory=asyncio.Event)
    _answers: dict[int, asyncio.Future[Any]] = field(default_factory=dict)

    async def call(self, method: str, **params: Any) -> Any:
        self._next += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._answers[self._next] = future
        await self.socket.send_str(json.dumps({"id": self._next, "method": method, "params": params}))
        return await asyncio.wait_for(future, 30)

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise AssertionError(f"{expression!r} raised in the page: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def screenshot(self) -> bytes:
        """The whole page as PNG bytes."""
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        return base64.b64decode(shot["data"])

    async def _read(self) -> None:
        async for message in self.socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._answers:
                future = self._answers.pop(data["id"])
                if "error" in data:
                    future.set_exception(AssertionError(f"DevTools refused: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method"), data.get("params", {})
            if method == "Page.loadEventFired":
                self._loaded.set()
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                self.problems.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                self.problems.append(f"exception: {params.get('exceptionDetails')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                self.problems.append(f"log: {params['entry'].get('text')}")
            elif method == "Network.loadingFailed":
                self.problems.append(f"failed to load: {params.get('errorText')}")


@contextlib.asynccontextmanager
async def open_page(path: Path, timeout: float = 60) -> AsyncIterator[Page]:
    """``path`` loaded in a fresh headless Chromium, its load event fired."""
    binary = chromium()
    assert binary, "chromium is not installed (make test installs Debian's chromium)"
    url = path.resolve().as_uri()  # noqa: ASYNC240  (a path, before anything runs)
    # Chromium's helpers may still be writing their profile as it is removed.
    with tempfile.TemporaryDirectory(prefix="relearn-chromium-", ignore_cleanup_errors=True) as profile:
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            port = await asyncio.wait_for(_devtools_port(Path(profile), process), timeout)
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    targets = await response.json(content_type=None)
                debugger = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
                async with session.ws_connect(debugger, max_msg_size=0) as socket:
                    page = Page(socket)
                    reader = asyncio.create_task(page._read())
                    try:
                        for domain in ("Page", "Runtime", "Log", "Network"):
                            await page.call(f"{domain}.enable")
                        await page.call("Page.navigate", url=url)
                        await asyncio.wait_for(_loaded(page, url), timeout)
                        yield page
                    finally:
                        reader.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # its renderers and helpers too
            await process.wait()


async def _loaded(page: Page, url: str) -> None:
    """Until the page at ``url`` (not the blank one it replaced) has loaded."""
    while True:
        state = await page.evaluate("document.readyState + ' ' + location.href")
        if state == f"complete {url}":
            return
        await asyncio.sleep(0.1)


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process) -> str:
    """The port Chromium writes to its profile once its DevTools server listens."""
    port_file = profile / "DevToolsActivePort"
    while True:
        assert process.returncode is None, f"chromium exited with {process.returncode}"
        text = await asyncio.to_thread(lambda: port_file.read_text() if port_file.exists() else "")
        if text.strip():
            return text.split()[0]
        await asyncio.sleep(0.1)
