"""The chart's PrometheusRule, as rendered by Helm's engine and run by promtool.

Two releases load their rules into one Prometheus: each evaluates only its own series (its
namespace and its PodMonitor's job), so one sidecar's kill switch raises one alert, and one
release's missing sidecars raise LayersSidecarAbsent for that release only. The tuning values
(threshold, `for`, severity, disabling, labels, runbook base, namespace) change what promtool
sees, and a misspelt alert name is refused.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.k8s import CHART_DIR, Obj, render_chart
from tests.monitoring import alert_names
from tests.tools import tool

MONITORED = {"prometheusRule": {"enabled": True}, "podMonitor": {"enabled": True}}


def the_rule(values: dict[str, Any], *, name: str = "demo", namespace: str = "apps") -> Obj:
    objects = [
        o for objs in render_chart(values, name=name, namespace=namespace).values() for o in objs
    ]
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return rule


def rules_by_alert(rule: Obj) -> dict[str, Obj]:
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def merged(*layers: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merged(result[key], value)
            else:
                result[key] = value
    return result


def promtool_test(
    tmp: Path, rules: dict[str, Obj], tests: list[dict[str, Any]], *, annotations: bool = True
) -> None:
    """Writes each rendered PrometheusRule's groups as a rules file and runs `promtool test
    rules` with `tests` against all of them at once (one Prometheus loading every release).
    promtool compares annotations whole; `annotations=False` drops them for tests about labels."""
    files = []
    for name, rule in rules.items():
        groups = rule["spec"]["groups"]
        if not annotations:
            groups = [
                {**group, "rules": [{**r, "annotations": {}} for r in group["rules"]]}
                for group in groups
            ]
        path = tmp / f"{name}.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
        files.append(path.name)
    test_file = tmp / "chart.test.yaml"
    test_file.write_text(
        yaml.safe_dump(
            {"rule_files": files, "evaluation_interval": "1m", "tests": tests}, sort_keys=False
        )
    )
    result = subprocess.run(
        [tool("promtool"), "test", "rules", test_file.name],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    inside = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{inside}}}", "values": values}


# What the Operator gives the targets of PodMonitor <namespace>/<release>-layers-readiness.
def target(namespace: str, release: str, pod: str) -> dict[str, str]:
    return {
        "job": f"{namespace}/{release}-layers-readiness",
        "instance": f"{pod}:8080",
        "namespace": namespace,
        "pod": pod,
    }


def test_every_alert_is_rendered_with_a_runbook_and_promtool_accepts_it(tmp_path: Path) -> None:
    # With a hub and the injector: their alerts come only with them.
    rule = the_rule(merged(MONITORED, {"hub": {"enabled": True}, "injector": {"enabled": True}}))
    assert sorted(rules_by_alert(rule)) == sorted(alert_names())
    for alert in rules_by_alert(rule).values():
        assert alert["annotations"]["runbook_url"].startswith("docs/monitoring.md#")
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


SELECTOR = re.compile(r"\b(layers_[a-z_]+|up)\b(\{[^}]*\})?")


def test_every_selector_is_scoped_to_the_release() -> None:
    scope = '{namespace="shop", job="shop/web-layers-readiness"'
    for alert in rules_by_alert(the_rule(MONITORED, name="web", namespace="shop")).values():
        selectors = SELECTOR.findall(alert["expr"])
        assert selectors, alert["alert"]
        for name, matchers in selectors:
            assert matchers.startswith(scope), f"{alert['alert']}: {name}{matchers} is not scoped"


def test_two_releases_in_one_namespace_never_evaluate_each_other(tmp_path: Path) -> None:
    rules = {
        release: the_rule(MONITORED, name=release, namespace="shop") for release in ("web", "api")
    }
    web = target("shop", "web", "web-0")
    # the same pod scraped by another Prometheus job must not count either
    stray = {**web, "job": "shop/somebody-elses-podmonitor"}
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "name": "one kill switch, one alert; api's sidecars are absent, web's are not",
                "interval": "1m",
                "input_series": [
                    series("layers_kill_switch", web, "1x20"),
                    series("layers_kill_switch", stray, "1x20"),
                    series("layers_sidecar_build_info", {**web, "version": "0.1.0"}, "1x20"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "LayersKillSwitchEngaged",
                        "exp_alerts": [{"exp_labels": {**web, "severity": "critical"}}],
                    },
                    {
                        "eval_time": "16m",
                        "alertname": "LayersSidecarAbsent",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "namespace": "shop",
                                    "job": "shop/api-layers-readiness",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
        annotations=False,
    )


def test_two_namespaces_without_a_podmonitor_are_scoped_by_namespace(tmp_path: Path) -> None:
    values = {"prometheusRule": {"enabled": True}}
    rules = {ns: the_rule(values, name="web", namespace=ns) for ns in ("shop", "pay")}
    shop = {"job": "kubernetes-pods", "instance": "10.0.0.1:8080", "namespace": "shop"}
    pay = {"job": "kubernetes-pods", "instance": "10.0.0.2:8080", "namespace": "pay"}
    promtool_test(
        tmp_path,
        rules,
        [
            {
                "name": "each namespace's rules see only their namespace",
                "interval": "1m",
                "input_series": [
                    series("layers_credit_balance", shop, "500x30"),
                    series("layers_credit_balance", pay, "50000x30"),
                    series("layers_sidecar_build_info", {**pay, "version": "0.1.0"}, "1x30"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "20m",
                        "alertname": "LayersCreditsLow",
                        "exp_alerts": [{"exp_labels": {**shop, "severity": "warning"}}],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "LayersSidecarAbsent",
                        "exp_alerts": [
                            {"exp_labels": {"namespace": "shop", "severity": "warning"}}
                        ],
                    },
                ],
            }
        ],
        annotations=False,
    )


TUNED = merged(
    MONITORED,
    {
        "prometheusRule": {
            "namespace": "monitoring",
            "creditsThreshold": 5000,
            "additionalRuleLabels": {"team": "payments"},
            "runbookBaseUrl": "https://runbooks.example.com/layers",
            "alerts": {
                "LayersCreditsLow": {"for": "1h", "severity": "page", "labels": {"tier": "1"}},
                "LayersSidecarAbsent": {"enabled": False},
            },
        }
    },
)


def test_tuning_values_change_the_rules() -> None:
    rule = the_rule(TUNED, name="web", namespace="shop")
    assert rule["metadata"]["namespace"] == "monitoring"
    alerts = rules_by_alert(rule)
    assert "LayersSidecarAbsent" not in alerts
    low = alerts["LayersCreditsLow"]
    assert low["for"] == "1h"
    assert low["labels"] == {"severity": "page", "team": "payments", "tier": "1"}
    assert low["expr"].rstrip().endswith("< 5000")
    assert "threshold of 5000" in low["annotations"]["description"]
    assert (
        low["annotations"]["runbook_url"] == "https://runbooks.example.com/layers#layerscreditslow"
    )
    kill = alerts["LayersKillSwitchEngaged"]
    assert kill["labels"] == {"severity": "critical", "team": "payments"}
    assert kill["for"] == "1m"
    # the rule lives in another namespace, the scope stays the release's pods
    assert 'namespace="shop"' in kill["expr"]


def test_tuned_threshold_and_for_fire_as_promtool_sees_them(tmp_path: Path) -> None:
    rule = the_rule(TUNED, name="web", namespace="shop")
    web = target("shop", "web", "web-0")
    low = rules_by_alert(rule)["LayersCreditsLow"]
    promtool_test(
        tmp_path,
        {"web": rule},
        [
            {
                "name": "4000 is low under a 5000 threshold, after an hour",
                "interval": "1m",
                "input_series": [series("layers_credit_balance", web, "4000x90")],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "LayersCreditsLow"},
                    {
                        "eval_time": "70m",
                        "alertname": "LayersCreditsLow",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **web,
                                    "severity": "page",
                                    "team": "payments",
                                    "tier": "1",
                                },
                                "exp_annotations": {
                                    "summary": "Layers credit balance is low (4k) for shop/web-0",
                                    "description": low["annotations"]["description"].replace(
                                        "{{ $value | humanize }}", "4k"
                                    ),
                                    "runbook_url": low["annotations"]["runbook_url"],
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    )


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"alerts": {"LayersKillSwitchEngagd": {"enabled": False}}}, "no such alert"),
        ({"alerts": {"LayersCreditsLow": {"for": "an hour"}}}, "/prometheusRule/alerts"),
        ({"alerts": {"LayersCreditsLow": {"severty": "info"}}}, "severty"),
        ({"creditsThreshold": "lots"}, "/prometheusRule/creditsThreshold"),
    ],
)
def test_tuning_mistakes_are_refused(values: dict[str, Any], complaint: str) -> None:
    with helm_python.Chart.load(CHART_DIR) as chart, pytest.raises(helm_python.HelmError) as caught:
        chart.render(merged(MONITORED, {"prometheusRule": values}), name="demo", namespace="apps")
    assert complaint in str(caught.value)


@pytest.mark.parametrize(
    "scenario",
    sorted(
        path.name.removesuffix("-values.yaml")
        for path in (CHART_DIR / "ci").glob("*-values.yaml")
        if (yaml.safe_load(path.read_text()) or {}).get("prometheusRule", {}).get("enabled")
    ),
)
def test_every_ci_scenario_s_rules_pass_promtool(tmp_path: Path, scenario: str) -> None:
    values = yaml.safe_load((CHART_DIR / "ci" / f"{scenario}-values.yaml").read_text())
    rule = the_rule(values)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_additional_rule_labels_never_override_an_alert_s_own() -> None:
    values = merged(MONITORED, {"prometheusRule": {"additionalRuleLabels": {"severity": "x"}}})
    for alert in rules_by_alert(the_rule(values)).values():
        assert alert["labels"]["severity"] in {"critical", "warning"}, alert["alert"]
