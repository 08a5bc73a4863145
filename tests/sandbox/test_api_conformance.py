"""The sandbox API server behaves like Kubernetes where Relearn, kubectl and
the kubernetes client rely on it. Every test talks through the official
``kubernetes`` client, so the same suite runs against a real cluster when
RELEARN_TEST_KUBECONFIG is set."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, watch
from relearn_sandbox.cluster import SandboxConfig, SandboxThread

GROUP, VERSION = "relearn.dev", "v1alpha1"


def configmap(name: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}, **extra}, "data": {"k": "v"}}


def experiment(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ABExperiment",
        "metadata": {"name": name},
        "spec": {"model": "m", "challenger": "1.1.0", "workload": {"name": "m"}, **spec},
    }


@pytest.fixture
def custom(api_client: client.ApiClient, relearn_crds: None) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create_abx(custom: client.CustomObjectsApi, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments", body)
    return result


# -- discovery ---------------------------------------------------------------


def test_discovery_lists_builtin_and_custom_resources(api_client: client.ApiClient, relearn_crds: None) -> None:
    core_resources = {r.name for r in client.CoreV1Api(api_client).get_api_resources().resources}
    assert {"pods", "pods/log", "pods/status", "services", "events", "configmaps", "secrets", "namespaces"} <= (
        core_resources
    )
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "batch", "apiextensions.k8s.io", "coordination.k8s.io", GROUP} <= groups
    relearn = client.CustomObjectsApi(api_client).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in relearn}
    assert by_name["modelversions"].short_names == ["mv"]
    assert by_name["abexperiments"].categories == ["relearn"]
    assert "abexperiments/status" in by_name


# -- create / get / identity ---------------------------------------------------------


def test_create_assigns_identity_and_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "cfg-"}, "data": {}})
    meta = created.metadata
    assert meta.name.startswith("cfg-")
    assert len(meta.name) == len("cfg-") + 5
    assert meta.uid
    assert meta.creation_timestamp is not None
    assert int(meta.resource_version) > 0
    assert core.read_namespaced_config_map(meta.name, namespace).metadata.uid == meta.uid


def test_duplicate_name_is_409_and_missing_namespace_is_404(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("one"))
    with pytest.raises(client.ApiException) as duplicate:
        core.create_namespaced_config_map(namespace, configmap("one"))
    assert duplicate.value.status == 409
    with pytest.raises(client.ApiException) as missing:
        core.create_namespaced_config_map("no-such-namespace", configmap("x"))
    assert missing.value.status == 404
    assert "no-such-namespace" in missing.value.body


def test_resource_version_is_monotonic(core: client.CoreV1Api, namespace: str) -> None:
    versions = [
        int(core.create_namespaced_config_map(namespace, configmap(f"c{i}")).metadata.resource_version)
        for i in range(5)
    ]
    assert versions == sorted(versions)
    assert len(set(versions)) == 5


# -- update / patch / conflicts ----------------------------------------------------------


def test_stale_update_is_409_conflict(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(namespace, configmap("c"))
    core.patch_namespaced_config_map("c", namespace, {"data": {"k": "changed"}})
    first.data = {"k": "mine"}
    with pytest.raises(client.ApiException) as stale:
        core.replace_namespaced_config_map("c", namespace, first)
    assert stale.value.status == 409
    assert core.read_namespaced_config_map("c", namespace).data == {"k": "changed"}


def test_patch_with_stale_resource_version_precondition_is_409(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, configmap("c"))
    core.patch_namespaced_config_map("c", namespace, {"data": {"k": "2"}})
    with pytest.raises(client.ApiException) as stale:
        core.patch_namespaced_config_map(
            "c", namespace, {"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"k": "3"}}
        )
    assert stale.value.status == 409


def test_json_patch_and_merge_patch(core: client.CoreV1Api, namespace: str, api_client: client.ApiClient) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})
    core.patch_namespaced_config_map("c", namespace, [{"op": "replace", "path": "/data/a", "value": "10"}])
    core.patch_namespaced_config_map("c", namespace, {"data": {"b": None, "c": "3"}})  # merge: null deletes
    assert core.read_namespaced_config_map("c", namespace).data == {"a": "10", "c": "3"}


def test_strategic_merge_patch_merges_containers_by_name(
    api_client: client.ApiClient, namespace: str, sandbox: Any
) -> None:
    apps = client.AppsV1Api(api_client)
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "containers": [
                {"name": "a", "image": "img-a", "command": ["false"], "env": [{"name": "X", "value": "1"}]},
                {"name": "b", "image": "img-b", "command": ["false"]},
            ]
        },
    }
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "d"},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "x"}}, "template": template},
        },
    )
    apps.patch_namespaced_deployment(
        "d",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}},
    )
    containers = apps.read_namespaced_deployment("d", namespace).spec.template.spec.containers
    assert [c.name for c in containers] == ["a", "b"]
    assert [(e.name, e.value) for e in containers[0].env] == [("X", "1"), ("Y", "2")]
    assert containers[0].image == "img-a"


def test_generation_moves_with_spec_only(custom: client.CustomObjectsApi, namespace: str) -> None:
    created = create_abx(custom, namespace, experiment("e"))
    assert created["metadata"]["generation"] == 1
    labelled = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", "e", {"metadata": {"labels": {"team": "ml"}}}
    )
    assert labelled["metadata"]["generation"] == 1
    status = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "abexperiments", "e", {"status": {"phase": "Progressing"}}
    )
    assert status["metadata"]["generation"] == 1
    edited = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", "e", {"spec": {"traffic": {"weight": 20}}}
    )
    assert edited["metadata"]["generation"] == 2


def test_status_subresource_is_separate_from_spec(custom: client.CustomObjectsApi, namespace: str) -> None:
    create_abx(custom, namespace, experiment("e"))
    via_main = custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "abexperiments", "e", {"status": {"phase": "Promoted"}}
    )
    assert "status" not in via_main
    via_status = custom.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "abexperiments",
        "e",
        {"status": {"phase": "Progressing"}, "spec": {"challenger": "9.9.9"}},
    )
    assert via_status["status"]["phase"] == "Progressing"
    assert via_status["spec"]["challenger"] == "1.1.0"


# -- selectors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("tier=web", ["a", "b"]),
        ("tier==web", ["a", "b"]),
        ("tier!=web", ["c", "d"]),
        ("tier in (web,db)", ["a", "b", "c"]),
        ("tier notin (web)", ["c", "d"]),
        ("canary", ["b"]),
        ("!canary", ["a", "c", "d"]),
        ("tier=web,canary", ["b"]),
    ],
)
def test_label_selectors(core: client.CoreV1Api, namespace: str, selector: str, expected: list[str]) -> None:
    for name, labels in {
        "a": {"tier": "web"},
        "b": {"tier": "web", "canary": "yes"},
        "c": {"tier": "db"},
        "d": {},
    }.items():
        core.create_namespaced_config_map(namespace, configmap(name, labels))
    found = core.list_namespaced_config_map(namespace, label_selector=selector).items
    assert sorted(c.metadata.name for c in found) == expected


def test_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    for name in ("a", "b"):
        core.create_namespaced_config_map(namespace, configmap(name))
    assert [
        c.metadata.name for c in core.list_namespaced_config_map(namespace, field_selector="metadata.name=b").items
    ] == ["b"]
    everywhere = core.list_config_map_for_all_namespaces(field_selector=f"metadata.namespace={namespace}").items
    assert sorted(c.metadata.name for c in everywhere) == ["a", "b"]
    assert [
        c.metadata.name for c in core.list_namespaced_config_map(namespace, field_selector="metadata.name!=a").items
    ] == ["b"]


# -- watch ------------------------------------------------------------------------------


def watch_events(core: client.CoreV1Api, namespace: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    stream = watch.Watch()
    try:
        yield from stream.stream(core.list_namespaced_config_map, namespace, **kwargs)
    finally:
        stream.stop()


def test_watch_streams_changes_and_resumes_from_a_version(core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, configmap("a"))
    core.patch_namespaced_config_map("a", namespace, {"data": {"k": "2"}})
    core.delete_namespaced_config_map("a", namespace)
    seen = []
    for event in watch_events(core, namespace, resource_version=rv, timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 3:
            break
    assert seen == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")]

    # Resuming after the ADDED event replays only what came after it.
    later = core.create_namespaced_config_map(namespace, configmap("b")).metadata.resource_version
    core.patch_namespaced_config_map("b", namespace, {"data": {"k": "3"}})
    first = next(watch_events(core, namespace, resource_version=later, timeout_seconds=5))
    assert (first["type"], first["object"].data) == ("MODIFIED", {"k": "3"})


def test_watch_with_label_selector_reports_objects_leaving_it(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("a", {"keep": "yes"}))
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.patch_namespaced_config_map("a", namespace, {"metadata": {"labels": {"keep": None}}})
    event = next(watch_events(core, namespace, resource_version=rv, label_selector="keep=yes", timeout_seconds=5))
    assert (event["type"], event["object"].metadata.name) == ("DELETED", "a")


def test_watch_ends_after_timeout_seconds(core: client.CoreV1Api, namespace: str) -> None:
    started = time.monotonic()
    assert list(watch_events(core, namespace, timeout_seconds=1)) == []
    assert time.monotonic() - started < 10


def test_watch_sends_bookmarks_when_allowed(core: client.CoreV1Api, namespace: str, sandbox: Any) -> None:
    # Sandbox-only: a real server sends bookmarks about once a minute.
    events = watch_events(core, namespace, allow_watch_bookmarks=True, timeout_seconds=3)
    assert "BOOKMARK" in [e["type"] for e in events]


def test_too_old_resource_version_is_410_gone(tmp_path: Any, sandbox: Any) -> None:
    # A sandbox with a history of 5 changes, to make a version too old.
    small = SandboxThread(SandboxConfig(workdir=tmp_path, prometheus=False, history=5))
    started = small.start()
    try:
        from kubernetes import config

        api = config.new_client_from_config(config_file=str(started.kubeconfig))
        core = client.CoreV1Api(api)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(10):
            core.create_namespaced_config_map("default", configmap(f"c{i}"))
        with pytest.raises(client.ApiException) as gone:
            next(
                watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2)
            )
        assert gone.value.status == 410
        api.close()
    finally:
        small.stop()


# -- deletion --------------------------------------------------------------------------


def test_finalizers_hold_deletion_until_removed(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("held", finalizers=["test.relearn.dev/hold"]))
    core.delete_namespaced_config_map("held", namespace)
    marked = core.read_namespaced_config_map("held", namespace)
    assert marked.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("held", namespace, {"metadata": {"finalizers": None}})
    with pytest.raises(client.ApiException) as gone:
        core.read_namespaced_config_map("held", namespace)
    assert gone.value.status == 404


def test_owner_deletion_collects_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, configmap("owner"))
    core.create_namespaced_config_map(
        namespace,
        configmap(
            "dependent",
            ownerReferences=[{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}],
        ),
    )
    core.create_namespaced_config_map(namespace, configmap("bystander"))
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.delete_namespaced_config_map("owner", namespace)
    for event in watch_events(core, namespace, resource_version=rv, timeout_seconds=30):
        if event["type"] == "DELETED" and event["object"].metadata.name == "dependent":
            break
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["bystander"]


def test_dry_run_stores_nothing(core: client.CoreV1Api, namespace: str) -> None:
    answered = core.create_namespaced_config_map(namespace, configmap("dry"), dry_run="All")
    assert answered.metadata.name == "dry"
    assert core.list_namespaced_config_map(namespace).items == []


def test_dry_run_in_delete_options_deletes_nothing(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, configmap("kept", {"app": "a"}))
    options = client.V1DeleteOptions(dry_run=["All"])
    core.delete_namespaced_config_map("kept", namespace, body=options)
    core.delete_collection_namespaced_config_map(namespace, label_selector="app=a", body=options)
    assert [c.metadata.name for c in core.list_namespaced_config_map(namespace).items] == ["kept"]
    with pytest.raises(client.ApiException) as refused:
        core.delete_namespaced_config_map("kept", namespace, dry_run="Some")
    assert refused.value.status == 400


def test_dry_run_crd_serves_nothing(api_client: client.ApiClient) -> None:
    crd = {
        "metadata": {"name": "gadgets.dry.example.com"},
        "spec": {
            "group": "dry.example.com",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
            "scope": "Namespaced",
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}}}
            ],
        },
    }
    answered = client.ApiextensionsV1Api(api_client).create_custom_resource_definition(crd, dry_run="All")
    assert [c.type for c in answered.status.conditions] == ["NamesAccepted", "Established"]
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert "dry.example.com" not in groups


# -- what the registry strategies add ---------------------------------------------------


def test_secret_string_data_is_merged_into_data_on_create_and_patch(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "auth"}, "data": {"user": "YWRh"}, "stringData": {"password": "pw"}}
    )
    core.patch_namespaced_secret("auth", namespace, {"stringData": {"token": "t0k"}})
    secret = core.read_namespaced_secret("auth", namespace)
    assert secret.string_data is None
    assert {k: base64.b64decode(v).decode() for k, v in secret.data.items()} == {
        "user": "ada",
        "password": "pw",
        "token": "t0k",
    }


def job(name: str, **spec: Any) -> dict[str, Any]:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    return {"metadata": {"name": name}, "spec": {"template": template, **spec}}


def test_job_selects_its_own_pods_unless_manual(api_client: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api_client)
    made = batch.create_namespaced_job(namespace, job("auto"))
    uid = made.metadata.uid
    assert made.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    assert made.spec.template.metadata.labels["batch.kubernetes.io/controller-uid"] == uid
    assert made.spec.template.metadata.labels["job-name"] == "auto"
    manual = job("manual", manualSelector=True, selector={"matchLabels": {"mine": "yes"}})
    manual["spec"]["template"]["metadata"] = {"labels": {"mine": "yes"}}
    assert batch.create_namespaced_job(namespace, manual).spec.selector.match_labels == {"mine": "yes"}


def test_deployment_scale_subresource(api_client: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    labels = {"app": "s"}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "s"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale("s", namespace)
    assert (scale.spec.replicas, scale.status.selector) == (0, "app=s")
    apps.patch_namespaced_deployment_scale("s", namespace, {"spec": {"replicas": 2}}, dry_run="All")
    assert apps.read_namespaced_deployment("s", namespace).spec.replicas == 0
    scale.spec.replicas = 0
    apps.replace_namespaced_deployment_scale("s", namespace, scale)
    with pytest.raises(client.ApiException) as negative:
        apps.patch_namespaced_deployment_scale("s", namespace, {"spec": {"replicas": -1}})
    assert negative.value.status == 422


# -- custom resources: schema admission ---------------------------------------------------


def test_invalid_custom_resource_is_422_naming_the_field(custom: client.CustomObjectsApi, namespace: str) -> None:
    with pytest.raises(client.ApiException) as invalid:
        create_abx(custom, namespace, experiment("too-much", traffic={"weight": 150}))
    assert invalid.value.status == 422
    assert "spec.traffic.weight" in invalid.value.body
    assert custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "abexperiments")["items"] == []


def test_cel_rule_rejects_challenger_equal_to_champion(custom: client.CustomObjectsApi, namespace: str) -> None:
    with pytest.raises(client.ApiException) as invalid:
        create_abx(custom, namespace, experiment("same", champion="1.1.0"))
    assert invalid.value.status == 422
    assert "challenger must differ from champion" in invalid.value.body


def test_transition_rule_keeps_model_version_immutable(custom: client.CustomObjectsApi, namespace: str) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": "m-1"},
        "spec": {"model": "m", "version": "1.0.0", "baseModel": {"uri": "/models/m"}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    with pytest.raises(client.ApiException) as invalid:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelversions", "m-1", {"spec": {"version": "2.0.0"}}
        )
    assert invalid.value.status == 422
    assert "version is immutable" in invalid.value.body


def test_defaults_are_applied_and_unknown_fields_pruned(custom: client.CustomObjectsApi, namespace: str) -> None:
    body = experiment("e")
    body["spec"]["notAField"] = True
    created = create_abx(custom, namespace, body)
    assert created["spec"]["traffic"] == {"weight": 10}
    assert created["spec"]["analysis"]["method"] == "sequential"
    assert created["spec"]["routing"] == {"provider": "gateway-api"}
    assert "notAField" not in created["spec"]


def test_deleting_a_namespace_deletes_its_objects(core: client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "t-doomed"}})
    core.create_namespaced_config_map("t-doomed", configmap("c"))
    core.delete_namespace("t-doomed")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # a real cluster finalizes namespaces asynchronously
        remaining = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=t-doomed").items
        namespaces = [n.metadata.name for n in core.list_namespace().items]
        if not remaining and "t-doomed" not in namespaces:
            return
        threading.Event().wait(0.5)
    raise AssertionError("namespace t-doomed or its objects remain")
