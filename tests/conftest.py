"""Tests by kind. Every test module has one kind, set here, so that selecting by marker is exact:

- `inprocess`: pure functions and in-process servers on loopback; seconds for all of them.
- `e2e`: real processes (the sidecar, the emulator, Prometheus); the slow part of the suite.
- `tools`: the deploy and monitoring files checked with real tools (the Helm engine,
  kubernetes-validate, promtool, hadolint, kubectl); a few seconds.
- `image` and `release` (set in their modules, on top of `e2e`): the image built and run, and
  what `make release` wrote to dist/ read back; `pytest -m release` runs the release alone.

`pytest -m inprocess` is the quick loop (nothing to install as root, under 30 s on two cores);
`make test` runs everything. A module missing from KINDS counts as `e2e` (the quick loop never
pays for a process by surprise) until it is listed. Each source module `sidecar/<role>/<name>.py`
has its tests in `tests/test_<role>_<name>.py` (`tests/test_<name>.py` for the core at the top of
`sidecar/`); the other modules test behaviour across modules (processes, tools, the image).
Shared builders live in `tests/support.py`, `tests/strategies.py` (hypothesis), `tests/tools.py`,
`tests/monitoring.py`, `tests/dockerfile.py`, `tests/k8s.py`, `tests/image.py` (build),
`tests/container.py` (run), `tests/admission.py` (the Pods and AdmissionReviews the API server
makes of a workload), `tests/kubelet.py` (the kubelet's rules), `tests/wiring.py` (foreign
workloads wired through every path) and `tests/kubelet_pod.py` (a wired pod run by podman as the
kubelet runs it); a test module never imports another test module.

Hypothesis runs a profile: `dev` (few examples, the quick loop's pace) unless CI=true, which
selects `ci` (the full count). HYPOTHESIS_PROFILE names one explicitly.
"""

from __future__ import annotations

import os
from typing import Final

import pytest
from hypothesis import HealthCheck, settings

# The machine is shared and noisy: no per-example deadline, and slow generation is no failure.
settings.register_profile(
    "ci", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)

KINDS: Final = {
    "test_hub_cache": "inprocess",
    "test_agent_check": "inprocess",
    "test_emulator_app": "inprocess",
    "test_hub_server": "inprocess",
    "test_hub_upstream": "inprocess",
    "test_hub_metrics": "inprocess",
    "test_agent_journal": "inprocess",
    "test_agent_keys": "inprocess",
    "test_layout": "inprocess",
    "test_agent_metrics": "inprocess",
    "test_outcome": "inprocess",
    "test_outcome_properties": "inprocess",
    "test_agent_poller": "inprocess",
    "test_readiness": "inprocess",
    "test_agent_readyfile": "inprocess",
    "test_redact": "inprocess",
    "test_schedule": "inprocess",
    "test_agent_probes": "inprocess",
    "test_runtime_server": "inprocess",
    "test_settings": "inprocess",
    "test_throttle": "inprocess",
    "test_options": "inprocess",
    "test_exits": "inprocess",
    "test_filekind": "inprocess",
    "test_auth": "inprocess",
    "test_emulator_scenario": "inprocess",
    "test_emulator_demo": "inprocess",
    "test_runtime_errors": "inprocess",
    "test_runtime_lifecycle": "inprocess",
    "test_runtime_metrics": "inprocess",
    "test_headers": "inprocess",
    "test_bodies": "inprocess",
    "test_values": "inprocess",
    "test_secret": "inprocess",
    "test_commands": "inprocess",
    "test_bench_report": "inprocess",
    "test_whoami": "inprocess",
    "test_logs": "inprocess",
    "test_agent_serve": "inprocess",
    "test_injector_wiring": "inprocess",
    "test_injector_patch": "inprocess",
    "test_cli": "e2e",
    "test_inject": "e2e",
    "test_injector": "e2e",
    "test_fallback": "e2e",
    "test_encodings": "e2e",
    "test_pooled_connections": "e2e",
    "test_log_leaks": "e2e",
    "test_runtime_tls": "e2e",
    "test_fd_limits": "e2e",
    "test_faults": "e2e",
    "test_hostile": "e2e",
    "test_jsonscan": "inprocess",
    "test_hub": "e2e",
    "test_proxy": "e2e",
    "test_image": "e2e",  # and `image` (in the module): `pytest -m image` runs the image alone
    "test_release": "e2e",  # and `release`: reads back what `make release` wrote to dist/
    "test_lifecycle": "e2e",
    "test_manifests_run": "e2e",
    "test_prometheus_e2e": "e2e",
    "test_scrape_configs": "e2e",
    "test_ca_bundle": "e2e",
    "test_helm_hub_run": "e2e",
    "test_helm_hub_tls": "tools",
    "test_alerts": "tools",
    "test_alertmanager": "tools",
    "test_placeholders": "tools",
    "test_alertmanager_e2e": "e2e",
    "test_chart_alerts": "tools",
    "test_checkov": "tools",
    "test_documented_commands": "tools",
    "test_dashboard": "tools",
    "test_deploy_manifests": "tools",
    "test_docs": "tools",
    "test_dockerfile": "tools",
    "test_helm_chart": "tools",
    "test_helm_hub": "tools",
    "test_helm_injector": "tools",
    "test_deploy_hub": "tools",
    "test_kubelet": "inprocess",
    "test_foreign_workloads": "tools",
    "test_wiring_agreement": "tools",
}
KIND_MARKERS: Final = frozenset({"inprocess", "e2e", "tools"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # A test that names its own kind (one promtool check among in-process tests) keeps it.
        if any(item.get_closest_marker(kind) for kind in KIND_MARKERS):
            continue
        item.add_marker(KINDS.get(item.path.stem, "e2e"))
