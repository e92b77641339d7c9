"""A real Prometheus (Debian's package) scrapes a real `layers-sidecar serve` that polls a real
`layers-sidecar emulate`, with monitoring/prometheus.yml and the alert rules loaded.

The configuration is monitoring/prometheus.yml with exactly the changes its header lists:
1s intervals, the rules file's absolute path, and the job's Kubernetes pod discovery replaced by
one static target on loopback that carries the labels pod discovery would give it.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path
from typing import Any

import pytest

from sidecar.emulator.app import api_key_id
from tests.monitoring import (
    CONTAINER,
    HUB_NAMESPACE,
    JOB,
    MORE_GAUGES,
    NAMESPACE,
    POD,
    SERIES_NAMES,
    alert_names,
    api,
    dashboard_queries,
    e2e_config,
    load_dashboard,
    prometheus,
)
from tests.support import (
    FAKE_KEY,
    WHOAMI,
    clean_env,
    emulator,
    free_port,
    sidecar,
    start,
    wait_for,
)

pytestmark = pytest.mark.e2e


def is_hub_panel(where: str) -> bool:
    """The dashboard's fleet-mode row: its panels show something only where a hub is scraped."""
    return "'Hub: " in where


def query(url: str, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = api(url, "query", query=expr)["result"]
    return result


def active_alerts(url: str) -> list[dict[str, Any]]:
    alerts: list[dict[str, Any]] = api(url, "alerts")["alerts"]
    return alerts


# What Grafana puts in for the dashboard's variables with "All" selected.
GRAFANA_VARIABLES = {
    "$job": ".*",
    "$namespace": ".*",
    "$pod": ".*",
    "$instance": ".*",
    "$__rate_interval": "1m",
}
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


def grafana_query(url: str, expr: str) -> list[str] | list[dict[str, Any]]:
    """What Grafana gets for a dashboard query: a variable's values, or a panel's series."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    label_values = LABEL_VALUES.match(expr)
    if label_values:
        selector, label = label_values.groups()
        values: list[str] = api(url, f"label/{label}/values", **{"match[]": selector})
        return values
    return query(url, expr)


def test_prometheus_scrapes_the_sidecar_and_sees_the_kill_switch(tmp_path: Path) -> None:
    with emulator(tmp_path) as upstream:
        upstream.set(creditBalance=4321.5, rateLimitTier="partner")
        with sidecar(tmp_path, upstream.url) as serve:
            target = serve.url.removeprefix("http://")
            with prometheus(tmp_path, e2e_config(target)) as prom:
                # the gauges, through Prometheus, with the labels the relabelling gives
                (balance,) = wait_for(
                    lambda: query(prom, "layers_credit_balance"),
                    timeout=15,
                    what="Prometheus to have scraped layers_credit_balance",
                )
                assert balance["metric"] == {
                    "__name__": "layers_credit_balance",
                    "job": JOB,
                    "instance": target,
                    "namespace": NAMESPACE,
                    "pod": POD,
                    "container": CONTAINER,
                }
                assert float(balance["value"][1]) == 4321.5
                tiers = {
                    series["metric"]["tier"]: float(series["value"][1])
                    for series in query(prom, "layers_rate_limit_tier")
                }
                assert tiers == {"standard": 0, "pilot": 0, "partner": 1, "internal": 0}

                # every series name the contract promises is there (the dashboard and the
                # alerts use no other)
                names = set(api(prom, "label/__name__/values", **{"match[]": f'{{job="{JOB}"}}'}))
                assert SERIES_NAMES - names == set(), "exported per SPEC.md but not scraped"
                assert MORE_GAUGES - names == set(), "the reason and key gauges are not scraped"

                # the rules loaded and evaluate without errors, and a healthy key is quiet
                def rules_evaluated() -> list[dict[str, Any]] | None:
                    groups = api(prom, "rules", type="alert")["groups"]
                    rules = [rule for group in groups for rule in group["rules"]]
                    return rules if all(rule["health"] == "ok" for rule in rules) else None

                rules = wait_for(rules_evaluated, timeout=10, what="every rule evaluated once")
                assert sorted(rule["name"] for rule in rules) == sorted(alert_names())
                wait_for(
                    lambda: active_alerts(prom) == [],
                    timeout=10,
                    what="no alert for a healthy key",
                )

                # every dashboard query runs, and has something to show for a healthy key (the
                # hub's row where a hub runs: test_prometheus_sees_the_hub_once_per_key)
                for where, expr in dashboard_queries(load_dashboard()):
                    if is_hub_panel(where):
                        assert isinstance(grafana_query(prom, expr), list), where
                        continue
                    wait_for(
                        functools.partial(grafana_query, prom, expr),
                        timeout=10,
                        what=f"{where} to show something: {expr!r}",
                    )

                # Layers engages the kill switch
                flipped = time.monotonic()
                upstream.set(killSwitch=True)

                def kill_switch_alert() -> dict[str, Any] | None:
                    for alert in active_alerts(prom):
                        if alert["labels"]["alertname"] == "LayersKillSwitchEngaged":
                            return alert
                    return None

                alert = wait_for(
                    kill_switch_alert, timeout=15, what="LayersKillSwitchEngaged to be active"
                )
                seconds = time.monotonic() - flipped
                print(f"LayersKillSwitchEngaged {alert['state']} {seconds:.1f}s after the flip")
                assert alert["state"] in {"pending", "firing"}
                assert alert["labels"] == {
                    "alertname": "LayersKillSwitchEngaged",
                    "severity": "critical",
                    "job": JOB,
                    "instance": target,
                    "namespace": NAMESPACE,
                    "pod": POD,
                    "container": CONTAINER,
                    # the key, for Alertmanager to group the pods of one key into one page
                    "organization_id": WHOAMI["organizationId"],
                    "api_key_id": api_key_id(FAKE_KEY.split("_")[2]),
                }
                annotations = alert["annotations"]
                assert annotations["summary"] == f"Layers kill switch engaged for {NAMESPACE}/{POD}"
                # the annotation's template query found who the key is
                description = annotations["description"]
                assert "(organization Acme Growth, organizationId 2481fa5c-" in description
                # and nothing else is raised for the same cause
                assert {a["labels"]["alertname"] for a in active_alerts(prom)} == {
                    "LayersKillSwitchEngaged"
                }

                # Layers clears it: the pod turns ready and the alert goes away by itself
                upstream.set(killSwitch=False)
                wait_for(
                    lambda: active_alerts(prom) == [],
                    timeout=15,
                    what="the alert to resolve after the switch is cleared",
                )
                assert serve.get("/readyz").status == 200


def test_a_missing_key_file_is_its_own_alert_not_an_egress_problem(tmp_path: Path) -> None:
    """A sidecar whose key file is missing counts failed polls, yet the alert is about the key:
    LayersApiKeyUnavailable goes pending, LayersWhoamiFailing (which sends the on-call to
    egress) and LayersWhoamiStale stay quiet."""
    with (
        emulator(tmp_path) as upstream,
        sidecar(
            tmp_path, upstream.url, key=None, LAYERS_API_KEY_FILE=str(tmp_path / "absent")
        ) as serve,
    ):
        target = serve.url.removeprefix("http://")
        with prometheus(tmp_path, e2e_config(target)) as prom:
            wait_for(
                lambda: query(prom, "layers_whoami_consecutive_failures >= 3"),
                timeout=15,
                what="the keyless sidecar to count failed polls",
            )

            def key_alert() -> dict[str, Any] | None:
                for alert in active_alerts(prom):
                    if alert["labels"]["alertname"] == "LayersApiKeyUnavailable":
                        return alert
                return None

            alert = wait_for(key_alert, timeout=15, what="LayersApiKeyUnavailable to be active")
            assert alert["labels"]["pod"] == POD
            assert "not a network problem" in alert["annotations"]["description"]
            # The failure alerts' own expressions, as loaded, select nothing while the failed
            # polls pile up: they cannot go pending, whatever their `for`.
            groups = api(prom, "rules", type="alert")["groups"]
            rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
            assert query(prom, "layers_whoami_consecutive_failures >= 3")
            for name in ("LayersWhoamiFailing", "LayersWhoamiStale"):
                assert query(prom, rules[name]["query"]) == [], name
            names = {a["labels"]["alertname"] for a in active_alerts(prom)}
            assert names == {"LayersApiKeyUnavailable"}, names
            assert upstream.whoami_requests() == 0, "nothing is sent without a key"


def test_prometheus_sees_the_hub_once_per_key(tmp_path: Path) -> None:
    """Fleet mode: two sidecars with one key ask a real `layers-sidecar hub`, which asks the
    emulator. Prometheus scrapes all three: the dashboard's hub row has something to show, and a
    kill switch raises LayersHubKillSwitchEngaged once, for the key, where the per-pod
    LayersKillSwitchEngaged is raised once per sidecar."""
    with emulator(tmp_path) as upstream:
        upstream.set(creditBalance=4321.5)
        port = free_port()
        hub = start(
            ["hub", "--listen", f"127.0.0.1:{port}", "--api-url", upstream.url, "--ttl", "1s"],
            env=clean_env(),
            tmp=tmp_path,
            name="hub",
            url=f"http://127.0.0.1:{port}",
            ready_path="/livez",
        )
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        try:
            with (
                sidecar(tmp_path / "a", hub.url, LAYERS_FALLBACK_API_URL=upstream.url) as first,
                sidecar(tmp_path / "b", hub.url, LAYERS_FALLBACK_API_URL=upstream.url) as second,
            ):
                targets = [s.url.removeprefix("http://") for s in (first, second)]
                config = e2e_config(*targets, hub=hub.url.removeprefix("http://"))
                with prometheus(tmp_path, config) as prom:
                    # the hub's row of the dashboard has something to show
                    for where, expr in dashboard_queries(load_dashboard()):
                        if is_hub_panel(where):
                            wait_for(
                                functools.partial(grafana_query, prom, expr),
                                timeout=15,
                                what=f"{where} to show something: {expr!r}",
                            )
                    (info,) = wait_for(
                        lambda: query(prom, f'layers_whoami_info{{pod="{POD}"}}'),
                        timeout=10,
                        what="who the key is",
                    )
                    upstream.set(killSwitch=True)

                    def by_name() -> dict[str, list[dict[str, Any]]] | None:
                        found: dict[str, list[dict[str, Any]]] = {}
                        for alert in active_alerts(prom):
                            found.setdefault(alert["labels"]["alertname"], []).append(alert)
                        ready = {"LayersKillSwitchEngaged", "LayersHubKillSwitchEngaged"}
                        return (
                            found
                            if ready <= set(found)
                            and len(found["LayersKillSwitchEngaged"]) == len(targets)
                            else None
                        )

                    alerts = wait_for(by_name, timeout=20, what="the kill-switch alerts")
                    (per_key,) = alerts["LayersHubKillSwitchEngaged"]
                    assert per_key["labels"] == {
                        "alertname": "LayersHubKillSwitchEngaged",
                        "severity": "critical",
                        "namespace": HUB_NAMESPACE,
                        "api_key_id": info["metric"]["api_key_id"],
                        "organization_id": info["metric"]["organization_id"],
                    }
                    assert set(alerts) == {"LayersKillSwitchEngaged", "LayersHubKillSwitchEngaged"}
        finally:
            hub.stop()
