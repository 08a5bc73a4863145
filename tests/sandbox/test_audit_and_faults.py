"""The sandbox's API call log, RBAC enforcement and fault injection, as the
RBAC test and the chaos bench use them: the operator's kubeconfig is its own
identity in the log; an identity held to rules gets 403 outside them; an API
restart refuses connections and then serves the same state on the same port;
status writes fail for as long as asked and no longer."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from relearn_sandbox.audit import ADMIN, OPERATOR, Grant
from relearn_sandbox.cluster import Sandbox, SandboxConfig, SandboxThread


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SandboxThread, Sandbox]]:
    """A sandbox of this module's own: its API server is restarted here."""
    thread = SandboxThread(SandboxConfig(workdir=tmp_path_factory.mktemp("faults"), prometheus=False))
    sandbox = thread.start()
    try:
        yield thread, sandbox
    finally:
        thread.stop()


def api(kubeconfig: Path) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def refuses_connections(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parsed.hostname or "127.0.0.1", parsed.port or 80)) != 0


def test_the_operators_calls_are_logged_apart_with_their_rbac_verbs(private: tuple[SandboxThread, Sandbox]) -> None:
    _, sandbox = private
    admin, operator = api(sandbox.kubeconfig), api(sandbox.operator_kubeconfig)
    admin.create_namespace({"metadata": {"name": "audited"}})
    sandbox.audit.clear()

    operator.create_namespaced_config_map("audited", {"metadata": {"name": "c"}})
    operator.read_namespaced_config_map("c", "audited")
    operator.patch_namespaced_config_map("c", "audited", {"data": {"a": "b"}})
    operator.list_namespaced_pod("audited", watch=True, timeout_seconds=1, _preload_content=False).read()
    admin.list_namespaced_config_map("audited")
    with pytest.raises(client.ApiException):
        operator.read_namespaced_service_status("missing", "audited")

    seen = [(c.verb, c.group, c.rbac_resource, c.namespace, c.code) for c in sandbox.api_calls(OPERATOR)]
    assert seen == [
        ("create", "", "configmaps", "audited", 201),
        ("get", "", "configmaps", "audited", 200),
        ("patch", "", "configmaps", "audited", 200),
        ("watch", "", "pods", "audited", 200),
        ("get", "", "services/status", "audited", 404),
    ]
    assert [(c.verb, c.resource) for c in sandbox.api_calls(ADMIN)] == [("list", "configmaps")]


def test_an_identity_held_to_rules_is_forbidden_outside_them(private: tuple[SandboxThread, Sandbox]) -> None:
    _, sandbox = private
    admin, operator = api(sandbox.kubeconfig), api(sandbox.operator_kubeconfig)
    for name in ("granted", "elsewhere"):
        admin.create_namespace({"metadata": {"name": name}})
    rules = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]
    sandbox.enforce_rbac(OPERATOR, [Grant(rules, namespace="granted")])
    try:
        operator.create_namespaced_config_map("granted", {"metadata": {"name": "c"}})
        assert operator.read_namespaced_config_map("c", "granted").metadata.name == "c"
        with pytest.raises(client.ApiException) as refused:
            operator.list_namespaced_config_map("granted")
        assert refused.value.status == 403
        assert json.loads(refused.value.body)["message"] == (
            'configmaps is forbidden: User "operator" cannot list resource "configmaps" in API group "" '
            'in the namespace "granted"'
        )
        with pytest.raises(client.ApiException) as other_namespace:
            operator.create_namespaced_config_map("elsewhere", {"metadata": {"name": "c"}})
        assert other_namespace.value.status == 403
        with pytest.raises(client.ApiException) as cluster_scoped:
            operator.list_namespace()
        assert cluster_scoped.value.status == 403
        admin.list_namespace()  # the admin is not held to the operator's rules
    finally:
        sandbox.enforce_rbac(OPERATOR, None)
    assert operator.list_namespaced_config_map("granted").items


def test_an_api_restart_refuses_connections_then_serves_the_same_state_on_the_same_port(
    private: tuple[SandboxThread, Sandbox],
) -> None:
    thread, sandbox = private
    admin = api(sandbox.kubeconfig)
    admin.create_namespace({"metadata": {"name": "survives"}})
    before = admin.create_namespaced_config_map("survives", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    url = sandbox.api_url

    thread.run(sandbox.stop_api())
    assert refuses_connections(url)
    thread.run(sandbox.start_api())

    assert sandbox.api_url == url
    after = admin.read_namespaced_config_map("c", "survives")
    assert (after.data, after.metadata.uid, after.metadata.resource_version) == (
        {"k": "v"},
        before.metadata.uid,
        before.metadata.resource_version,
    )
    thread.restart_api(down=0.2)  # the blocking form the bench uses
    assert admin.read_namespaced_config_map("c", "survives").data == {"k": "v"}


def test_status_writes_fail_for_as_long_as_asked_and_other_writes_go_through(
    private: tuple[SandboxThread, Sandbox],
) -> None:
    thread, sandbox = private
    admin = api(sandbox.kubeconfig)
    admin.create_namespace({"metadata": {"name": "failing"}})
    admin.create_namespaced_service("failing", {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}})
    sandbox.fail_status_writes(60, code=503)
    try:
        with pytest.raises(client.ApiException) as failed:
            admin.patch_namespaced_service_status("s", "failing", {"status": {"loadBalancer": {}}})
        assert failed.value.status == 503
        assert failed.value.reason == "Service Unavailable"
        admin.patch_namespaced_service("s", "failing", {"metadata": {"labels": {"still": "writable"}}})
    finally:
        thread.fail_status_writes(0)
        thread.run(_noop())  # the thread-safe form has reached the sandbox's loop
    admin.patch_namespaced_service_status("s", "failing", {"status": {"loadBalancer": {}}})


async def _noop() -> None:
    return None
