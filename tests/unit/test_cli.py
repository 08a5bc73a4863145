"""The ``relearn`` command as a user runs it, and the packaging around it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from relearn.cli import build_parser, main

REPO = Path(__file__).resolve().parents[2]


def test_validate_accepts_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    assert "ABExperiment/invoice-classifier-1.1.0: ok" in out
    assert out.strip().endswith("4 objects, 0 invalid")


def test_validate_reports_each_broken_cr_with_its_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(REPO / "tests/fixtures/broken")]) == 1
    out = capsys.readouterr().out
    assert "ABExperiment/too-much-traffic: INVALID" in out
    assert "spec.traffic.weight: 150 is greater than the maximum of 100" in out
    assert "spec.challenger: challenger must differ from champion" in out
    assert out.strip().endswith("4 objects, 4 invalid")


def test_validate_says_when_a_path_does_not_exist(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_validate_reports_unparseable_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("spec: [unclosed\n")
    assert main(["validate", str(tmp_path)]) == 1
    assert "not valid YAML" in capsys.readouterr().out


def test_crds_prints_applyable_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == [
        "modelversions.relearn.dev",
        "driftpolicies.relearn.dev",
        "abexperiments.relearn.dev",
    ]


def test_run_options_cover_scope_peering_liveness_and_logs() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "-n",
            "ml-prod",
            "-n",
            "ml-staging",
            "--peering",
            "relearn",
            "--priority",
            "auto",
            "--log-format",
            "json",
        ]
    )
    assert args.namespace == ["ml-prod", "ml-staging"]
    assert args.peering == "relearn"
    assert 1 <= args.priority <= 1_000_000
    assert args.log_format == "json"
    assert args.liveness == "http://0.0.0.0:8080/healthz"


def test_run_refuses_both_namespace_and_all_namespaces() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "-n", "a", "-A"])


@pytest.mark.parametrize(
    ("namespaces", "scans"),
    [("ml-prod", False), ("ml-prod,ml-staging", False), ("", True), ("ml-*", True), ("!kube-system", True)],
)
def test_serving_named_namespaces_scans_nothing_cluster_wide(namespaces: str, scans: bool) -> None:
    # The chart's namespaced install has no right to list namespaces or CRDs: kopf must not try.
    from relearn.handlers.startup import exact_namespaces

    assert exact_namespaces(namespaces) is not scans


def test_imports_from_repo_root_do_not_shadow_the_standard_library() -> None:
    # operator/ is a folder at the root: it must never become a package that
    # hides the stdlib `operator` module.
    code = "import operator, relearn, relearn_trainer; assert operator.add(1, 2) == 3; print(operator.__file__)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    stdlib_operator = Path(result.stdout.strip())
    assert stdlib_operator.name == "operator.py"
    assert REPO not in stdlib_operator.parents


def test_console_script_runs(tmp_path: Path) -> None:
    relearn = Path(sys.executable).with_name("relearn")
    result = subprocess.run([str(relearn), "--version"], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "relearn 0.1.0"


def test_trainer_env_reports_torch() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "relearn_trainer", "env"], capture_output=True, text=True, check=True
    )
    report = yaml.safe_load(result.stdout)
    assert report["torch"].startswith("2.")
    assert isinstance(report["cuda_available"], bool)


def test_report_options_parse_with_their_defaults() -> None:
    import datetime

    from relearn.cli import build_parser

    args = build_parser().parse_args(["report", "documents", "--since", "2d"])
    assert args.models == ["documents"]
    assert args.since == datetime.timedelta(days=2)
    assert args.scrape_interval == datetime.timedelta(seconds=30)
    assert args.output == "relearn-report.html"
    assert args.format == "html"


def test_the_sandbox_adds_demo_and_sandbox_to_the_command() -> None:
    parsed = build_parser().parse_args(["sandbox", "up", "--no-prometheus"])
    assert parsed.plugin_main.__module__ == "relearn_sandbox.cli"
    assert build_parser().parse_args(["demo"]).plugin_main.__module__ == "relearn_sandbox.cli"


@pytest.mark.parametrize("command", ["demo", "sandbox"])
def test_without_the_sandbox_installed_its_commands_say_how_to_get_it(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import relearn.cli

    monkeypatch.setattr(relearn.cli, "entry_points", lambda group: [])  # an operator-only install (the image)
    assert main([command, "up"] if command == "sandbox" else [command]) == 2
    error = capsys.readouterr().err
    assert "relearn-sandbox" in error
    assert "pip install ./sandbox" in error
    assert main(["crds"]) == 0  # the operator's own commands do not need it
