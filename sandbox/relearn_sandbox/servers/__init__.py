"""Model servers and load generators the tests, benches and the demo run as
pods in the sandbox (``python -m relearn_sandbox.servers.<name>``): real
modules, linted and type-checked like the rest, instead of programs inside
strings. Each exports Relearn's metric contract (:mod:`relearn.serving`)."""

from __future__ import annotations

import json
import urllib.request

__all__ = ["fail_requests"]


def fail_requests(url: str, failing: bool = True, timeout: float = 10) -> None:
    """Turn the rollback drill's fault on (or off) in the reference model
    server at ``url`` (``relearn_trainer.serve`` started with
    ``RELEARN_FAULT_INJECTION=true``): every request fails until it is off."""
    request = urllib.request.Request(
        f"{url}/admin/fault",
        data=json.dumps({"failing": failing}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout):
        pass
