"""The sandbox's pure parts: patches, selectors, printer-column JSONPath,
and the OpenAPI pruning/defaulting/validation shared with `relearn validate`."""

from __future__ import annotations

import datetime

import pytest
from relearn.api.openapi import apply_defaults, prune, unknown_fields, validate
from relearn_sandbox.patching import PatchError, apply_patch, merge_patch, strategic_merge_patch
from relearn_sandbox.selectors import SelectorError, parse_field_selector, parse_label_selector
from relearn_sandbox.tables import age, json_path


def test_merge_patch_follows_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    assert merge_patch({"list": [1, 2]}, {"list": [3]}) == {"list": [3]}


def test_strategic_merge_deletes_and_replaces_by_directive() -> None:
    pod = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}]}}
    deleted = strategic_merge_patch(pod, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert deleted == {"spec": {"containers": [{"name": "b", "image": "2"}]}}
    replaced = strategic_merge_patch(pod, {"spec": {"$patch": "replace", "containers": []}})
    assert replaced == {"spec": {"containers": []}}


def test_strategic_merge_keys_ports_by_their_field() -> None:
    service = {"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}}
    patched = strategic_merge_patch(service, {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}})
    assert patched["spec"]["ports"] == [
        {"port": 80, "name": "http", "targetPort": 8080},
        {"port": 443, "name": "https"},
    ]


def test_strategic_merge_unions_finalizers_and_honours_delete_from_primitive_list() -> None:
    obj = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge_patch(obj, {"metadata": {"finalizers": ["c"]}})["metadata"]["finalizers"] == ["a", "b", "c"]
    removed = strategic_merge_patch(obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


def test_bad_patches_are_errors() -> None:
    with pytest.raises(PatchError, match="JSON patch"):
        apply_patch("application/json-patch+json", {}, [{"op": "remove", "path": "/missing"}])
    with pytest.raises(PatchError, match="merge key"):
        apply_patch(
            "application/strategic-merge-patch+json",
            {"spec": {"containers": []}},
            {"spec": {"containers": [{"image": "x"}]}},
        )
    with pytest.raises(PatchError, match="unsupported"):
        apply_patch("text/plain", {}, {})


def test_label_selector_rejects_garbage() -> None:
    with pytest.raises(SelectorError, match="unable to parse"):
        parse_label_selector("a in b")


def test_selectors_match_labels_and_fields() -> None:
    obj = {"metadata": {"name": "x", "labels": {"env": "prod"}}, "involvedObject": {"kind": "Pod"}}
    assert parse_label_selector("env in (prod, staging),!legacy")(obj)
    assert not parse_label_selector("env notin (prod)")(obj)
    assert parse_field_selector("metadata.name=x,involvedObject.kind=Pod")(obj)
    assert not parse_field_selector("involvedObject.kind!=Pod")(obj)


def test_printer_column_json_path() -> None:
    obj = {
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Drifted", "status": "False"}],
            "items": [{"name": "a"}, {"name": "b"}],
        }
    }
    assert json_path(obj, '.status.conditions[?(@.type=="Drifted")].status') == ["False"]
    assert json_path(obj, ".status.items[1].name") == ["b"]
    assert json_path(obj, ".status.items[*].name") == ["a", "b"]
    assert json_path(obj, ".status.missing.field") == []


def test_age_reads_like_kubectl() -> None:
    now = datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)
    assert age("2026-01-01T23:59:30Z", now) == "30s"
    assert age("2026-01-01T23:55:00Z", now) == "5m"
    assert age("2026-01-01T21:00:00Z", now) == "3h"
    assert age("2025-12-29T00:00:00Z", now) == "4d"


SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "weight": {"type": "integer", "default": 10, "maximum": 100},
                "nested": {"type": "object", "default": {}, "properties": {"mode": {"type": "string", "default": "a"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "version": {
                    "type": "string",
                    "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "version is immutable"}],
                },
            },
        },
    },
}


def test_prune_drops_undeclared_fields_but_keeps_open_ones() -> None:
    obj = {
        "apiVersion": "x/v1",
        "kind": "K",
        "metadata": {"name": "n"},
        "spec": {"weight": 1, "typo": 2, "labels": {"a": "b"}, "open": {"anything": [1]}},
        "extra": True,
    }
    assert prune(SCHEMA, obj) == {
        "apiVersion": "x/v1",
        "kind": "K",
        "metadata": {"name": "n"},
        "spec": {"weight": 1, "labels": {"a": "b"}, "open": {"anything": [1]}},
    }
    assert unknown_fields(SCHEMA, obj) == ["spec.typo", "extra"]


def test_defaults_fill_in_recursively() -> None:
    assert apply_defaults(SCHEMA, {"spec": {}}) == {"spec": {"weight": 10, "nested": {"mode": "a"}}}


def test_transition_rules_compare_with_the_stored_object() -> None:
    old = {"spec": {"version": "1.0.0"}}
    assert validate(SCHEMA, {"spec": {"version": "1.0.0"}}, old) == []
    (error,) = validate(SCHEMA, {"spec": {"version": "2.0.0"}}, old)
    assert (error.field, error.message) == ("spec.version", "version is immutable")
    assert validate(SCHEMA, {"spec": {"version": "2.0.0"}}) == []  # on create there is nothing to compare


def test_a_list_by_label_follows_label_changes_and_deletions() -> None:
    from relearn_sandbox.store import Store

    store = Store()
    config_maps = store.type_for("", "configmaps")
    for i in range(50):
        store.create(config_maps, "default", {"metadata": {"name": f"cm-{i}", "labels": {"model": f"m{i % 5}"}}})
    selector = parse_label_selector("model=m1")

    def names() -> list[str]:
        listed, _ = store.list_objects(config_maps, "default", selector, lambda _: True)
        return [o["metadata"]["name"] for o in listed]

    assert names() == sorted(f"cm-{i}" for i in range(50) if i % 5 == 1)
    moved = store.get(config_maps, "default", "cm-1")
    moved["metadata"]["labels"] = {"model": "m2"}
    store.update(config_maps, "default", "cm-1", moved)
    store.delete(config_maps, "default", "cm-6")
    added = {"metadata": {"name": "cm-new", "labels": {"model": "m1", "team": "a"}}}
    store.create(config_maps, "default", added)
    assert names() == sorted({f"cm-{i}" for i in range(50) if i % 5 == 1} - {"cm-1", "cm-6"} | {"cm-new"})
    both = parse_label_selector("model=m1,team=a")
    assert [o["metadata"]["name"] for o in store.list_objects(config_maps, None, both, lambda _: True)[0]] == ["cm-new"]
