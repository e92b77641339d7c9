"""The alert rules: promtool accepts and unit-tests them, every alert tells the on-call what to do,
every alert has a firing and a quiet unit test, and the generated copies are in sync."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.k8s import K8S_VERSIONS, kustomize, validate
from tests.monitoring import QUERYABLE, RULES, alert_names, alerts, metric_names
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
RULE_TESTS = MONITORING / "alerts.test.yaml"
DASHBOARD = MONITORING / "dashboard.json"
GENERATOR = ROOT / "scripts" / "gen-monitoring"
DOCS = ROOT / "docs" / "monitoring.md"

SEVERITIES = {"critical", "warning"}
# Prometheus's template `query` function takes its PromQL as a printf format string.
TEMPLATE_QUERY = re.compile(r'printf\s+"((?:[^"\\]|\\.)*)"[^|}]*\|\s*query')


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_check_rules() -> None:
    result = run(tool("promtool"), "check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    # Run from monitoring/ as a user would; rule_files in the test file are relative to it.
    result = run(tool("promtool"), "test", "rules", RULE_TESTS.name, cwd=MONITORING)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_issue_s_alerts_are_there() -> None:
    names = set(alert_names())
    assert {
        "LayersKillSwitchEngaged",
        "LayersApiAccessRevoked",
        "LayersApiKeyUnauthenticated",
        "LayersBillingExhausted",
        "LayersCreditsLow",
        "LayersCreditsExhaustionForecast",
        "LayersWhoamiFailing",
        "LayersWhoamiStale",
        "LayersSidecarDown",
    } <= names
    by_name = {rule["alert"]: rule for rule in alerts()}
    assert (
        "predict_linear(layers_credit_balance" in by_name["LayersCreditsExhaustionForecast"]["expr"]
    )
    assert (
        "time() - layers_whoami_last_success_timestamp_seconds"
        in by_name["LayersWhoamiStale"]["expr"]
    )
    assert "up == 0" in by_name["LayersSidecarDown"]["expr"]
    assert "absent(" in by_name["LayersSidecarAbsent"]["expr"]


def test_every_alert_has_a_severity_a_for_and_guidance() -> None:
    names = alert_names()
    assert len(names) == len(set(names)), "alert names must be unique"
    for rule in alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Layers[A-Z][A-Za-z]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert "for" in rule, f"{name}: no `for:`, so one bad evaluation pages"
        annotations = rule["annotations"]
        assert set(annotations) >= {"summary", "description"}, name
        summary = re.sub(r"\{\{.*?\}\}", "x", annotations["summary"])
        assert "\n" not in summary, f"{name}: a summary is one line"
        assert len(summary) < 100, f"{name}: a summary is short"
        assert len(annotations["description"]) > 200, f"{name}: the description must say what to do"
    by_name = {rule["alert"]: rule for rule in alerts()}
    # the upstream's words for the stop-the-world signals: a hard stop, page Layers, no retries
    for name in ("LayersKillSwitchEngaged", "LayersApiAccessRevoked"):
        description = by_name[name]["annotations"]["description"]
        assert by_name[name]["labels"]["severity"] == "critical"
        for words in ("hard stop", "do not retry", "Page your Layers contact"):
            assert words in description, f"{name}: {words!r}"


def test_rules_name_only_exported_metrics() -> None:
    for rule in alerts():
        names = metric_names(rule["expr"])
        for annotation in rule["annotations"].values():
            for query in TEMPLATE_QUERY.findall(annotation):
                names |= metric_names(query.replace('\\"', '"'))
        assert names, rule["alert"]
        assert names <= QUERYABLE, f"{rule['alert']}: {sorted(names - QUERYABLE)} not exported"


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    firing: set[str] = set()
    quiet: set[str] = set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = set(alert_names())
    assert names - firing == set(), "alerts without a unit test where they fire"
    assert names - quiet == set(), "alerts without a unit test where they stay quiet"
    assert (firing | quiet) - names == set(), "unit tests for alerts that do not exist"


def test_every_alert_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    for name in alert_names():
        assert re.search(rf"^#+ .*`?{name}`?", docs, re.MULTILINE), f"{name} has no section"


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to -."""
    anchors = set()
    for heading in re.findall(r"^#+\s+(.+?)\s*$", markdown, re.MULTILINE):
        text = re.sub(r"[^\w\- ]", "", heading.lower())
        anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_links_its_runbook_section() -> None:
    anchors = github_anchors(DOCS.read_text(encoding="utf-8"))
    for rule in alerts():
        url = rule["annotations"].get("runbook_url", "")
        page, _, anchor = url.partition("#")
        # A path that exists in every copy (checkout, fork, sdist): no public home to link yet.
        assert page == "docs/monitoring.md", rule["alert"]
        assert (ROOT / page).is_file(), rule["alert"]
        assert anchor == rule["alert"].lower(), f"{rule['alert']}: {url}"
        assert anchor in anchors, f"{rule['alert']}: docs/monitoring.md has no section #{anchor}"


def test_generated_files_are_in_sync() -> None:
    result = run(sys.executable, str(GENERATOR), "--check")
    assert result.returncode == 0, result.stderr


def test_generator_notices_a_stale_copy(tmp_path: Path) -> None:
    shutil.copytree(MONITORING, tmp_path / "monitoring")
    assert run(sys.executable, str(GENERATOR), "--root", str(tmp_path)).returncode == 0
    assert run(sys.executable, str(GENERATOR), "--root", str(tmp_path), "--check").returncode == 0
    copy = tmp_path / "helm" / "layers-readiness" / "files" / "alerts.rules.yaml"
    copy.write_text(copy.read_text() + "# edited by hand\n")
    result = run(sys.executable, str(GENERATOR), "--root", str(tmp_path), "--check")
    assert result.returncode == 1
    assert "stale: helm/layers-readiness/files/alerts.rules.yaml" in result.stderr


def test_kustomize_builds_the_rule_and_the_dashboard() -> None:
    tool("kubectl")
    objects = {obj["kind"]: obj for obj in kustomize(ROOT / "deploy" / "monitoring")}
    assert set(objects) == {"PrometheusRule", "ConfigMap"}
    for obj in objects.values():
        for version in K8S_VERSIONS:
            validate(obj, version)
    rule = objects["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    configmap = objects["ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    (dashboard,) = configmap["data"].values()
    assert json.loads(dashboard) == json.loads(DASHBOARD.read_text(encoding="utf-8"))
