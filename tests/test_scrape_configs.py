"""The plain-Prometheus scrape configs keep a pod that a native sidecar holds in Pending.

A real Prometheus loads each config's `layers-readiness` job with its relabel_configs unchanged;
only Kubernetes pod discovery is replaced by static targets carrying the `__meta_kubernetes_*`
labels discovery would give pods in each phase (Debian's Prometheus has no Kubernetes discovery).
Its targets API then says which targets the relabelling kept and which it dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.monitoring import api, prometheus
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {
    "monitoring/prometheus.yml": ROOT / "monitoring" / "prometheus.yml",
    "deploy/prometheus/scrape-config.yaml": ROOT / "deploy" / "prometheus" / "scrape-config.yaml",
}
PHASES = ("Pending", "Running", "Succeeded", "Failed")


def discovered(port: int, phase: str, port_name: str = "layers-http") -> dict[str, Any]:
    return {
        "targets": [
            f"127.0.0.{PHASES.index(phase) + 1 if port_name == 'layers-http' else 9}:{port}"
        ],
        "labels": {
            "__meta_kubernetes_namespace": "shop",
            "__meta_kubernetes_pod_name": f"web-{phase.lower()}-{port_name}",
            "__meta_kubernetes_pod_container_name": "layers-readiness",
            "__meta_kubernetes_pod_container_port_name": port_name,
            "__meta_kubernetes_pod_phase": phase,
        },
    }


def config_with_phases(path: Path, port: int) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "layers-readiness"]
    config["scrape_configs"] = [job]  # the hub's job (fleet mode) is not about pending pods
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [discovered(port, phase) for phase in PHASES] + [
        discovered(port, "Running", port_name="http")  # the application's port: not ours
    ]
    config.pop("rule_files", None)
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "1s"}
    job.pop("scrape_interval", None)
    job.pop("scrape_timeout", None)
    return config


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_pending_pod_is_scraped_a_finished_one_is_not(tmp_path: Path, name: str) -> None:
    # Nothing needs to answer: which targets exist is decided by relabelling, before any scrape.
    port = free_port()
    with prometheus(tmp_path, config_with_phases(CONFIGS[name], port)) as url:

        def targets() -> dict[str, Any] | None:
            data: dict[str, Any] = api(url, "targets", state="any")
            seen = len(data["activeTargets"]) + len(data["droppedTargets"])
            return data if seen == len(PHASES) + 1 else None

        data = wait_for(targets, timeout=15, what="Prometheus to discover the static targets")
    active = {t["labels"]["pod"] for t in data["activeTargets"]}
    assert active == {"web-pending-layers-http", "web-running-layers-http"}, name
    dropped = {t["discoveredLabels"]["__meta_kubernetes_pod_name"] for t in data["droppedTargets"]}
    assert dropped == {
        "web-succeeded-layers-http",
        "web-failed-layers-http",
        "web-running-http",
    }, name
    for target in data["activeTargets"]:
        assert target["labels"]["namespace"] == "shop"
        assert target["labels"]["container"] == "layers-readiness"
