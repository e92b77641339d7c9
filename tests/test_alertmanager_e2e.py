"""Alerts that reach a person: emulator -> `layers-sidecar serve` -> a real Prometheus evaluating
the shipped rules -> a real Alertmanager with the configuration docs/monitoring.md gives -> a
webhook receiver in the test. All on loopback.

What the test changes, and only that: the rules' `for` durations are divided by FOR_SCALE (a
copy of monitoring/alerts.rules.yaml; expressions, labels and annotations as shipped),
Prometheus scrapes and evaluates every second and resends every second, the Alertmanager's root
route waits seconds instead of minutes (tests/alertmanager.py), and its receivers are the webhook.

- A kill switch on one key used by two pods reaches the on-call receiver as one notification for
  the key (grouped by organization_id and api_key_id), with both pods, the runbook_url and the
  summary; the same alerts for the pods (not ready, whoami failing) are inhibited while it fires,
  a pod with another key is not; when Layers clears the switch, a resolved notification follows.
- A missing key file pages as LayersApiKeyUnavailable, and nothing that reaches the receiver
  talks about network egress.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.emulator.app import api_key_id
from tests.alertmanager import (
    Webhook,
    alert,
    alert_states,
    alertmanager,
    alertnames,
    documented_config,
    for_test,
    post_alerts,
)
from tests.monitoring import JOB, NAMESPACE, POD, RULES, api, e2e_config, prometheus
from tests.support import FAKE_KEY, OTHER_KEY, WHOAMI, emulator, sidecar, wait_for

pytestmark = pytest.mark.e2e

ROOT_DOCS = Path(__file__).resolve().parent.parent / "docs"
FOR_SCALE = 30  # `for: 1m` becomes 2s, `for: 2m` 4s, `for: 5m` 10s
PROMETHEUS_FLAGS = ("--rules.alert.resend-delay=1s",)
DURATION = re.compile(r"^(\d+)([smh])$")
SECONDS = {"s": 1, "m": 60, "h": 3600}


def scaled_rules(tmp: Path) -> Path:
    """The shipped rules with every `for` divided by FOR_SCALE (at least 1s); nothing else."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            found = DURATION.match(str(rule.get("for", "")))
            if found:
                seconds = int(found[1]) * SECONDS[found[2]]
                rule["for"] = f"{max(1, seconds // FOR_SCALE)}s"
    path = tmp / "alerts.rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


@dataclass
class Pipeline:
    prometheus: str
    alertmanager: str
    webhook: Webhook

    def notifications(self, alertname: str, status: str | None = None) -> list[dict[str, Any]]:
        return [
            n
            for n in self.webhook.received()
            if n["groupLabels"].get("alertname") == alertname
            and (status is None or n["status"] == status)
        ]


@contextmanager
def pipeline(tmp: Path, targets: list[str]) -> Iterator[Pipeline]:
    """Prometheus scraping `targets` (pods POD, POD-1, ...) and sending to Alertmanager."""
    with ExitStack() as stack:
        webhook = stack.enter_context(Webhook())
        am = stack.enter_context(alertmanager(tmp, for_test(documented_config(), webhook.url)))
        config = e2e_config(*targets, rules=scaled_rules(tmp))
        am_target = am.removeprefix("http://")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [am_target]}]}]}
        prom = stack.enter_context(prometheus(tmp, config, *PROMETHEUS_FLAGS))
        yield Pipeline(prom, am, webhook)


def firing(prom: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api(prom, "alerts")["alerts"]
    return found


def pod_labels(prom: str, pod: str) -> dict[str, str]:
    """job and instance of a pod's target, as the alerts carry them."""
    (series,) = wait_for(
        lambda: api(prom, "query", query=f'layers_whoami_info{{pod="{pod}"}}')["result"],
        timeout=15,
        what=f"Prometheus to know who {pod}'s key is",
    )
    metric: dict[str, str] = series["metric"]
    return {k: metric[k] for k in ("job", "instance", "namespace", "pod")}


def test_a_kill_switch_pages_once_per_key_inhibits_its_echoes_and_resolves(
    tmp_path: Path,
) -> None:
    dirs = [tmp_path / name for name in ("a", "b", "c")]
    for d in dirs:
        d.mkdir()
    with (
        emulator(dirs[0]) as layers,
        emulator(dirs[2]) as other_layers,
        sidecar(dirs[0], layers.url) as first,
        sidecar(dirs[1], layers.url) as second,
        sidecar(dirs[2], other_layers.url, key=OTHER_KEY) as third,
    ):
        targets = [s.url.removeprefix("http://") for s in (first, second, third)]
        with pipeline(tmp_path, targets) as p:
            pods = [POD, f"{POD}-1", f"{POD}-2"]
            labels = {pod: pod_labels(p.prometheus, pod) for pod in pods}
            wait_for(lambda: firing(p.prometheus) == [], timeout=15, what="a quiet start")

            # Layers engages the kill switch for the key of the first two pods.
            layers.set(killSwitch=True)
            (page,) = wait_for(
                lambda: p.notifications("LayersKillSwitchEngaged", "firing"),
                timeout=30,
                what="the kill-switch page",
            )
            key = api_key_id(FAKE_KEY.split("_")[2])
            assert page["path"] == "layers-oncall"
            assert page["receiver"] == "layers-oncall"
            assert page["groupLabels"] == {
                "alertname": "LayersKillSwitchEngaged",
                "organization_id": WHOAMI["organizationId"],
                "api_key_id": key,
            }
            # one notification for the key, with both of its pods in it
            assert sorted(a["labels"]["pod"] for a in page["alerts"]) == pods[:2]
            assert page["commonLabels"]["severity"] == "critical"
            annotations = page["commonAnnotations"]
            assert annotations["runbook_url"] == "docs/monitoring.md#layerskillswitchengaged"
            assert (ROOT_DOCS / "monitoring.md").is_file()
            for a in page["alerts"]:
                pod = a["labels"]["pod"]
                summary = f"Layers kill switch engaged for {NAMESPACE}/{pod}"
                assert a["annotations"]["summary"] == summary
                assert a["annotations"]["runbook_url"] == annotations["runbook_url"]

            # What a hard stop makes redundant, for the same pods, is inhibited while it fires.
            # The shipped rules do not raise these (their `unless`): they are sent here as a
            # Prometheus with other rules would send them. The third pod's key is fine: its
            # copies are the control and must arrive.
            echoes = [
                {"alertname": name, "severity": "warning", **labels[pod], **extra}
                for pod in pods
                for name, extra in (
                    ("LayersNotReady", {"reason": "kill_switch"}),
                    ("LayersWhoamiFailing", {}),
                )
            ]
            post_alerts(p.alertmanager, [alert(e, lasting=600) for e in echoes])

            def states() -> dict[tuple[str, str], dict[str, Any]] | None:
                found = {
                    (a["labels"]["alertname"], a["labels"]["pod"]): a["status"]
                    for a in alert_states(p.alertmanager)
                    if a["labels"]["alertname"] in {"LayersNotReady", "LayersWhoamiFailing"}
                }
                return found if len(found) == len(echoes) else None

            seen = wait_for(states, timeout=10, what="Alertmanager to hold the posted alerts")
            for (name, pod), status in seen.items():
                if pod in pods[:2]:
                    assert status["state"] == "suppressed", (name, pod, status)
                    assert status["inhibitedBy"], (name, pod, status)
                else:
                    assert status["state"] == "active", (name, pod, status)
            # The control arrives (as a ticket), and the inhibited ones are not in it.
            for name in ("LayersNotReady", "LayersWhoamiFailing"):
                (ticket,) = wait_for(
                    functools.partial(p.notifications, name, "firing"),
                    timeout=15,
                    what=f"the control pod's {name} ticket",
                )
                assert ticket["receiver"] == "layers-tickets"
                assert [a["labels"]["pod"] for a in ticket["alerts"]] == [pods[2]]
            post_alerts(p.alertmanager, [alert(e, lasting=0) for e in echoes])

            # Layers clears the switch: the same group is resolved.
            layers.set(killSwitch=False)
            (resolved,) = wait_for(
                lambda: p.notifications("LayersKillSwitchEngaged", "resolved"),
                timeout=30,
                what="the resolved notification",
            )
            assert resolved["groupKey"] == page["groupKey"]
            assert sorted(a["labels"]["pod"] for a in resolved["alerts"]) == pods[:2]
            assert {a["status"] for a in resolved["alerts"]} == {"resolved"}
            # Exactly one page for the key from start to end, and nothing else paged.
            assert len(p.notifications("LayersKillSwitchEngaged", "firing")) == 1
            paged = [n for n in p.webhook.received() if n["receiver"] == "layers-oncall"]
            assert {name for n in paged for name in alertnames(n)} == {"LayersKillSwitchEngaged"}
            # No echo of the kill switch ever reached anyone as firing. (Once resolved, an alert
            # is no longer inhibited: the control's group lists the echoes as resolved.)
            for n in p.webhook.received():
                for a in n["alerts"]:
                    if (
                        a["labels"]["alertname"] != "LayersKillSwitchEngaged"
                        and a["status"] == "firing"
                    ):
                        assert a["labels"]["pod"] == pods[2], a


def test_a_missing_key_file_pages_as_such_and_never_about_egress(tmp_path: Path) -> None:
    with (
        emulator(tmp_path) as layers,
        sidecar(
            tmp_path, layers.url, key=None, LAYERS_API_KEY_FILE=str(tmp_path / "absent")
        ) as serve,
        pipeline(tmp_path, [serve.url.removeprefix("http://")]) as p,
    ):
        (page,) = wait_for(
            lambda: p.notifications("LayersApiKeyUnavailable", "firing"),
            timeout=30,
            what="the missing key file's page",
        )
        assert page["receiver"] == "layers-oncall"
        (only,) = page["alerts"]
        assert only["labels"]["pod"] == POD
        assert only["labels"]["job"] == JOB
        assert only["annotations"]["runbook_url"] == "docs/monitoring.md#layersapikeyunavailable"
        assert only["annotations"]["summary"] == (
            f"Layers API key file missing or unreadable for {NAMESPACE}/{POD}"
        )
        # The failed polls are there, yet no egress alert is pending or firing, and nothing
        # that reached the receiver sends anyone to look at the network.
        assert api(p.prometheus, "query", query="layers_whoami_consecutive_failures >= 3")["result"]
        active = {a["labels"]["alertname"] for a in firing(p.prometheus)}
        assert active == {"LayersApiKeyUnavailable"}, active
        delivered = json.dumps(p.webhook.received()).lower()
        assert "egress" not in delivered
        names = {name for n in p.webhook.received() for name in alertnames(n)}
        assert names == {"LayersApiKeyUnavailable"}
        assert layers.whoami_requests() == 0
