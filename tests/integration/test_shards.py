"""Two operator shards (``relearn run --shard 0/2`` and ``1/2``) on one
namespace: every object is handled by exactly one shard, the one its
namespace/name hashes to, and a shard restarted meanwhile loses nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from relearn.core.sharding import shard_of
from relearn_sandbox.processes import start_operator, stop_operator
from relearn_sandbox.testing import ControlPlane, condition, wait_for

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "relearn.dev", "v1alpha1"


def version(name: str) -> dict[str, Any]:
    body = yaml.safe_load((REPO / "examples" / "invoice-classifier" / "modelversion-1.1.0.yaml").read_text())
    body["metadata"] = {"name": name}
    body["spec"]["model"] = name
    return body


def accepted_by(log: Path) -> set[str]:
    """The objects whose spec this shard accepted (from its JSON log)."""
    names = set()
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") == "spec accepted":
            names.add(str((record.get("object") or {}).get("name")))
    return names


def all_ready(custom: client.CustomObjectsApi, namespace: str, names: set[str]) -> None:
    ready: set[str] = set()

    def done(obj: dict[str, Any]) -> bool:
        if condition(obj, "Ready"):
            ready.add(obj["metadata"]["name"])
        return names <= ready

    wait_for(
        custom.list_namespaced_custom_object,
        done,
        group=GROUP,
        version=VERSION,
        namespace=namespace,
        plural="modelversions",
        timeout=60,
    )


def test_two_shards_handle_every_object_once_and_a_restarted_shard_catches_up(
    control_plane: ControlPlane,
    namespace: str,
    relearn_crds: None,
    api_client: client.ApiClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    custom = client.CustomObjectsApi(api_client)
    logs = [tmp_path / "shard-0.log", tmp_path / "shard-1.log"]

    def start(index: int) -> Any:
        monkeypatch.setenv("RELEARN_SHARD", f"{index}/2")
        return start_operator(control_plane.kubeconfig, [namespace], logs[index])

    shards = [start(0), start(1)]
    try:
        first = {f"model-{i}" for i in range(12)}
        for name in sorted(first):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", version(name))
        all_ready(custom, namespace, first)

        # Shard 1 restarts; what is created while it is away is its on its return.
        assert stop_operator(shards[1]) == 0, logs[1].read_text()
        later = {f"model-{i}" for i in range(12, 24)}
        for name in sorted(later):
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", version(name))
        shards[1] = start(1)
        all_ready(custom, namespace, first | later)
    finally:
        for shard in shards:
            stop_operator(shard)

    handled = [accepted_by(log) for log in logs]
    assert handled[0].isdisjoint(handled[1])
    assert handled[0] | handled[1] == first | later
    for index, names in enumerate(handled):
        assert {shard_of(namespace, n, 2) for n in names} == {index}
