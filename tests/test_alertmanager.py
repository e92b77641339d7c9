"""The Alertmanager configuration docs/monitoring.md gives, checked by Alertmanager's own `amtool`:
it loads (`amtool check-config`), and every alert of monitoring/alerts.rules.yaml, with the labels
it fires with, is routed where the docs' table says (`amtool config routes test`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alertmanager import amtool, documented_config, documented_text, receiver_names
from tests.monitoring import alerts

# The key-level alerts carry the key (monitoring/alerts.rules.yaml) and are paged once per key.
PER_KEY = {"LayersKillSwitchEngaged", "LayersApiAccessRevoked"}
KEY_LABELS = {"organization_id": "2481fa5c", "api_key_id": "c2037bb9"}
POD_LABELS = {"job": "layers-readiness", "instance": "10.0.0.1:8080", "namespace": "shop"}

# What the docs' table says: critical pages, warning is a ticket.
RECEIVER_BY_SEVERITY = {"critical": "layers-oncall", "warning": "layers-tickets"}


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    path.write_text(documented_text())
    return path


def routed(config_file: Path, labels: dict[str, str]) -> list[str]:
    args = [f"{name}={value}" for name, value in labels.items()]
    done = amtool("config", "routes", "test", f"--config.file={config_file}", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split()


def test_amtool_check_config_accepts_the_documented_configuration(config_file: Path) -> None:
    checked = amtool("check-config", str(config_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    assert "1 inhibit rules" in checked.stdout
    assert receiver_names(documented_config()) == ["default", "layers-oncall", "layers-tickets"]


def test_amtool_check_config_refuses_a_broken_one(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(documented_text().replace("receiver: layers-oncall", "receiver: nobody"))
    assert amtool("check-config", str(broken)).returncode != 0


def test_every_alert_is_routed_where_the_docs_say(config_file: Path) -> None:
    rules = alerts()
    assert len(rules) >= 15
    for rule in rules:
        severity = rule["labels"]["severity"]
        labels = {"alertname": rule["alert"], "severity": severity, **POD_LABELS}
        if rule["alert"] in PER_KEY:
            labels |= KEY_LABELS
        assert routed(config_file, labels) == [RECEIVER_BY_SEVERITY[severity]], rule["alert"]


def test_a_hard_stop_pages_even_before_the_key_is_known(config_file: Path) -> None:
    # A kill switch seen before any good answer carries no key labels: it still pages.
    labels = {"alertname": "LayersKillSwitchEngaged", "severity": "critical", **POD_LABELS}
    assert routed(config_file, labels) == ["layers-oncall"]


def test_other_alerts_keep_the_user_s_default_route(config_file: Path) -> None:
    labels = {"alertname": "KubePodCrashLooping", "severity": "critical", **POD_LABELS}
    assert routed(config_file, labels) == ["default"]


def test_the_key_level_alerts_are_grouped_by_key() -> None:
    """The grouping itself is proven live in tests/test_alertmanager_e2e.py; this names it."""
    (layers,) = documented_config()["route"]["routes"]
    per_key = [
        route
        for route in layers["routes"]
        if any("LayersKillSwitchEngaged" in matcher for matcher in route["matchers"])
    ]
    assert [route["group_by"] for route in per_key] == [
        ["alertname", "organization_id", "api_key_id"]
    ]
    assert layers["group_by"] == ["alertname", "namespace"]
