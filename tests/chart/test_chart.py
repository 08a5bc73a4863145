"""The Helm chart lints, renders in both RBAC modes, passes Kubernetes schema
validation, and keeps the operator pod locked down."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "relearn"
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
# Kinds outside core Kubernetes that the chart may render, and their schemas' owners.
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ClusterKopfPeering", "KopfPeering"}

VALUE_SETS = {
    "defaults": None,
    "namespaced": {"rbac": {"clusterWide": False}, "watchNamespaces": ["ml-prod", "ml-staging"]},
    "everything-on": {
        "peering": {"enabled": True},
        "replicaCount": 2,
        "metrics": {"serviceMonitor": {"enabled": True}},
        "podDisruptionBudget": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "report": {
            "enabled": True,
            "namespaces": ["ml-prod", "ml-staging"],
            "persistentVolumeClaim": "reports",
            "webhook": {"secretName": "report-webhook", "format": "slack"},
        },
    },
    "namespaced-peering": {"rbac": {"clusterWide": False}, "peering": {"enabled": True}},
    "sharded": {"shards": 3, "peering": {"enabled": True}, "replicaCount": 2},
}


def render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    chart = helm_python.Chart.load(str(CHART))
    try:
        files = chart.render(values, name="relearn", namespace="relearn-system", is_install=True)
    finally:
        chart.close()
    return [
        doc for name, text in sorted(files.items()) if name.endswith(".yaml") for doc in yaml.safe_load_all(text) if doc
    ]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = (d for d in docs if d["kind"] == kind)
    return doc


def test_lint_strict_reports_no_errors() -> None:
    result = helm_python.lint(str(CHART), strict=True)
    assert result["errors"] == []


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
@pytest.mark.parametrize("k8s", KUBERNETES_VERSIONS)
def test_rendered_manifests_pass_kubernetes_validation(values: dict[str, Any] | None, k8s: str) -> None:
    docs = render(values)
    assert docs
    for doc in docs:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        kubernetes_validate.validate(doc, k8s, strict=True)


def test_operator_pod_is_locked_down() -> None:
    deployment = only(render(None), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert "--all-namespaces" in container["args"]


def test_namespaced_mode_grants_roles_only_in_watched_namespaces() -> None:
    docs = render(VALUE_SETS["namespaced"])
    roles = [d for d in docs if d["kind"] == "Role"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["ml-prod", "ml-staging"]
    # Named namespaces: kopf scans nothing (relearn.handlers.startup), so no cluster-wide right at all.
    assert [d["kind"] for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")] == []
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-prod" in args
    assert "--namespace=ml-staging" in args
    assert "--all-namespaces" not in args


def test_rbac_never_grants_wildcards_or_secret_listing() -> None:
    for values in VALUE_SETS.values():
        for doc in render(values):
            for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
                if "secrets" in rule["resources"]:
                    assert rule["verbs"] == ["get"]


def test_every_rbac_rule_says_why() -> None:
    # Each rule in the template is preceded by a comment explaining its verbs.
    text = (CHART / "templates" / "_rbac_rules.tpl").read_text() + (CHART / "templates" / "rbac.yaml").read_text()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("- apiGroups:"):
            previous = next(p for p in reversed(lines[:index]) if not p.startswith("{{"))
            assert previous.startswith("#"), f"rule without a reason: {line}"


def test_peering_renders_its_object_and_rights() -> None:
    docs = render(VALUE_SETS["everything-on"])
    assert only(docs, "ClusterKopfPeering")["metadata"]["name"] == "relearn"
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--peering=relearn" in args
    assert "--priority=auto" in args
    rules = [r for d in docs if d["kind"] == "ClusterRole" for r in d["rules"]]
    assert any(r["resources"] == ["clusterkopfpeerings"] for r in rules)
    assert only(docs, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"
    assert only(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_optional_objects_are_off_by_default() -> None:
    kinds = {d["kind"] for d in render(None)}
    assert not kinds & {
        "ServiceMonitor",
        "PodDisruptionBudget",
        "ClusterKopfPeering",
        "PrometheusRule",
        "ConfigMap",
        "CronJob",
    }


def test_the_weekly_report_runs_per_namespace_and_may_only_read_the_registry() -> None:
    docs = render(VALUE_SETS["everything-on"])
    jobs = [d for d in docs if d["kind"] == "CronJob"]
    assert sorted(j["metadata"]["namespace"] for j in jobs) == ["ml-prod", "ml-staging"]
    job = next(j for j in jobs if j["metadata"]["namespace"] == "ml-prod")
    assert job["spec"]["schedule"] == "0 6 * * 1"
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:4] == [
        "report",
        "--namespace=ml-prod",
        "--since=7d",
        "--output=/reports/relearn-report-{namespace}-{date}.html",
    ]
    webhook = next(e for e in container["env"] if e["name"] == "RELEARN_REPORT_WEBHOOK_URL")
    assert webhook["valueFrom"]["secretKeyRef"] == {"name": "report-webhook", "key": "url"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "reports", "persistentVolumeClaim": {"claimName": "reports"}} in pod["volumes"]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == pod["serviceAccountName"]]
    assert len(roles) == 2
    assert granted(roles[0]["rules"]) == {
        ("relearn.dev", "modelversions", "list"),
        ("relearn.dev", "abexperiments", "list"),
        ("relearn.dev", "driftpolicies", "list"),
        ("batch", "jobs", "list"),
        ("coordination.k8s.io", "leases", "list"),  # the models' champion records
    }


def test_unknown_value_is_refused_by_the_schema() -> None:
    with pytest.raises(helm_python.HelmError, match="additional properties 'bogus' not allowed"):
        render({"bogus": True})


def test_several_replicas_without_peering_are_refused() -> None:
    with pytest.raises(helm_python.HelmError, match=r"needs peering\.enabled"):
        render({"replicaCount": 2})


def test_chart_versions_match_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    pyproject = (REPO / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M)
    assert version is not None
    assert chart["appVersion"] == version.group(1)


def test_default_prometheus_reaches_the_operator_and_bad_urls_are_refused() -> None:
    args = only(render({"operator": {"prometheusUrl": "http://prometheus.monitoring:9090"}}), "Deployment")["spec"][
        "template"
    ]["spec"]["containers"][0]["args"]
    assert "--prometheus-url=http://prometheus.monitoring:9090" in args
    assert not any(
        a.startswith("--prometheus-url")
        for a in only(render(None), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    with pytest.raises(Exception, match="prometheusUrl"):
        render({"operator": {"prometheusUrl": "prometheus:9090"}})


def test_dashboard_and_alerts_use_only_metrics_the_operator_exports(tmp_path: Path) -> None:
    import json
    import re
    import shutil
    import subprocess

    import relearn.metrics  # noqa: F401  (registers the operator's metrics)
    from prometheus_client import REGISTRY

    exported = {m.name for m in REGISTRY.collect() if m.name.startswith("relearn_")}
    docs = render(VALUE_SETS["everything-on"])
    dashboard = json.loads(only(docs, "ConfigMap")["data"]["relearn.json"])
    rule = only(docs, "PrometheusRule")
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = {
        re.sub(r"_(total|bucket|count|sum)$", "", name)
        for e in expressions
        for name in re.findall(r"relearn_[a-z_]+", e)
    }
    assert used, "no Relearn metric used"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"
    assert {r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]} >= {
        "RelearnChampionRolledBack",
        "RelearnRetrainingFailed",
    }
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (the prometheus package) is not installed: alert syntax not checked")
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


# What the operator calls, by code path (group, resource, verb). The chart
# must grant exactly these, in both install modes: nothing missing (a call
# refused on a real cluster), nothing more (a permission no code path uses).
USED = {
    # kopf: watches every Relearn kind, patches its annotations and finalizer, posts Events.
    *{("relearn.dev", r, v) for r in ("modelversions", "driftpolicies", "abexperiments") for v in ("list", "watch")},
    *{("relearn.dev", r, "patch") for r in ("modelversions", "driftpolicies", "abexperiments")},
    ("", "events", "create"),
    # KubeClient.update_status: get, then patch the status subresource.
    *{("relearn.dev", r, "get") for r in ("modelversions", "driftpolicies", "abexperiments")},
    *{("relearn.dev", f"{r}/status", "patch") for r in ("modelversions", "driftpolicies", "abexperiments")},
    # handlers.retraining: the Job (create once, read back), its pods, the ModelVersion and ABExperiment it starts.
    ("batch", "jobs", "create"),
    ("batch", "jobs", "get"),
    ("", "pods", "list"),
    # handlers.retraining: a distributed retraining's Kubeflow PyTorchJob (create once, read back).
    ("kubeflow.org", "pytorchjobs", "create"),
    ("kubeflow.org", "pytorchjobs", "get"),
    ("relearn.dev", "modelversions", "create"),
    ("relearn.dev", "abexperiments", "create"),
    # handlers.experiments (Context.hand_record) and handlers.lookups: each model's champion record.
    *{("coordination.k8s.io", "leases", v) for v in ("get", "create", "update")},
    # handlers.drift: a large baseline's ConfigMap; credentials (core.consent decides their use).
    ("", "configmaps", "get"),
    ("", "secrets", "get"),
    # handlers.experiments/rollback and the routers: challenger workloads and routes.
    *{("apps", "deployments", v) for v in ("get", "list", "create", "update", "delete")},
    *{("", "services", v) for v in ("get", "list", "create", "update", "delete")},
    ("gateway.networking.k8s.io", "httproutes", "get"),
    ("gateway.networking.k8s.io", "httproutes", "update"),
    ("networking.istio.io", "virtualservices", "get"),
    ("networking.istio.io", "virtualservices", "update"),
    # routers: ready endpoints before traffic moves (EndpointSlices, else Endpoints).
    ("discovery.k8s.io", "endpointslices", "list"),
    ("", "endpoints", "get"),
}
# kopf observes CRDs when it serves every namespace (cluster-scoped by nature).
CRD_OBSERVER = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}


def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}


@pytest.mark.parametrize("mode", ["defaults", "namespaced"])
def test_rbac_grants_exactly_what_the_operator_calls(mode: str) -> None:
    docs = render(VALUE_SETS[mode])
    kind = "ClusterRole" if mode == "defaults" else "Role"
    for role in (d for d in docs if d["kind"] == kind and not d["metadata"]["name"].endswith("crd-observer")):
        rights = granted(role["rules"])
        assert rights - USED == set(), f"granted but never used: {sorted(rights - USED)}"
        assert USED - rights == set(), f"used but not granted: {sorted(USED - rights)}"
    observers = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("crd-observer")]
    assert [granted(o["rules"]) for o in observers] == ([CRD_OBSERVER] if mode == "defaults" else [])


def test_the_chart_limits_where_credentials_go() -> None:
    docs = render(
        {
            "security": {
                "allowedPrometheusUrls": ["https://prom.monitoring:9090"],
                "allowedWebhookHosts": ["*.slack.com"],
            }
        }
    )
    args = only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-prometheus-url=https://prom.monitoring:9090" in args
    assert "--allowed-webhook-host=*.slack.com" in args
    defaults = only(render(None), "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in defaults if a.startswith("--allowed-")]


def test_the_rbac_table_in_the_docs_is_the_charts() -> None:
    text = (REPO / "docs" / "operations.md").read_text()
    table = text[text.index("| API group | resource | verbs | used by |") :].split("\n\n")[0].splitlines()[2:]
    documented = set()
    for line in table:
        group, resources, verbs = (cell.strip() for cell in line.strip("|").split("|")[:3])
        if group == "kopf.dev":
            continue  # only with peering.enabled (test_peering_renders_its_object_and_rights)
        group = "" if group == '""' else group
        if resources == "*/status":
            names = [f"{r}/status" for r in ("modelversions", "driftpolicies", "abexperiments")]
        else:
            names = [r.strip() for r in resources.split(",")]
        documented |= {(group, r, v.strip()) for r in names for v in verbs.split(",")}
    rights = {r for d in render(None) if d["kind"] == "ClusterRole" for r in granted(d["rules"])}
    assert documented == rights


def test_a_weekly_report_to_a_path_needs_a_volume() -> None:
    with pytest.raises(helm_python.HelmError, match=r"set report\.persistentVolumeClaim"):
        render({"report": {"enabled": True}})
    docs = render({"report": {"enabled": True, "output": "s3://reports/r-{date}.html", "envFromSecret": "s3"}})
    (job,) = [d for d in docs if d["kind"] == "CronJob"]
    (container,) = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "s3"}}]


def test_shards_are_one_deployment_each_with_its_partition_and_its_own_peering() -> None:
    docs = render({"shards": 3, "peering": {"enabled": True}, "replicaCount": 2})
    deployments = sorted((d for d in docs if d["kind"] == "Deployment"), key=lambda d: d["metadata"]["name"])
    assert [d["metadata"]["name"] for d in deployments] == [f"relearn-shard-{i}" for i in range(3)]
    for i, deployment in enumerate(deployments):
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--shard={i}/3" in args
        assert f"--peering=relearn-shard-{i}" in args
        assert deployment["spec"]["replicas"] == 2
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector["relearn.dev/shard"] == str(i)
        assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()
    peerings = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "ClusterKopfPeering")
    assert peerings == [f"relearn-shard-{i}" for i in range(3)]
    (single,) = (d for d in render(None) if d["kind"] == "Deployment")
    assert single["metadata"]["name"] == "relearn"
    assert not any(a.startswith("--shard") for a in single["spec"]["template"]["spec"]["containers"][0]["args"])
