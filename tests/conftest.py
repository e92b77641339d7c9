"""Tests by kind. Every test module has one kind, set here, so that selecting by marker is exact:

- `inprocess`: pure functions and in-process servers on loopback; seconds for all of them.
- `e2e`: real processes (the sidecar, the emulator, Prometheus); the slow part of the suite.
- `tools`: the deploy and monitoring files checked with real tools (the Helm engine,
  kubernetes-validate, promtool, hadolint, kubectl); a few seconds.
- `image` and `release` (set in their modules, on top of `e2e`): the image built and run, and
  what `make release` wrote to dist/ read back; `pytest -m release` runs the release alone.

`pytest -m "not e2e"` is the quick loop; `make test` runs everything. A module missing from
KINDS counts as `e2e` (the quick loop never pays for a process by surprise) until it is listed.
Shared builders live in `tests/support.py`, `tests/tools.py`, `tests/monitoring.py`,
`tests/dockerfile.py`, `tests/k8s.py`, `tests/image.py` (build) and `tests/container.py` (run);
a test module never imports another test module.
"""

from __future__ import annotations

from typing import Final

import pytest

KINDS: Final = {
    "test_cache": "inprocess",
    "test_check": "inprocess",
    "test_emulator": "inprocess",
    "test_hub_parts": "inprocess",
    "test_journal": "inprocess",
    "test_keys": "inprocess",
    "test_layout": "inprocess",
    "test_metrics": "inprocess",
    "test_outcome": "inprocess",
    "test_outcome_properties": "inprocess",
    "test_poller": "inprocess",
    "test_readiness": "inprocess",
    "test_readyfile": "inprocess",
    "test_redact": "inprocess",
    "test_schedule": "inprocess",
    "test_server": "inprocess",
    "test_settings": "inprocess",
    "test_cli": "e2e",
    "test_fallback": "e2e",
    "test_faults": "e2e",
    "test_hostile": "e2e",
    "test_adversary": "e2e",
    "test_adversary_properties": "inprocess",
    "test_hub": "e2e",
    "test_image": "e2e",  # and `image` (in the module): `pytest -m image` runs the image alone
    "test_release": "e2e",  # and `release`: reads back what `make release` wrote to dist/
    "test_lifecycle": "e2e",
    "test_manifests_run": "e2e",
    "test_prometheus_e2e": "e2e",
    "test_scrape_configs": "e2e",
    "test_ca_bundle": "e2e",
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
    "test_deploy_hub": "tools",
}
KIND_MARKERS: Final = frozenset({"inprocess", "e2e", "tools"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        # A test that names its own kind (one promtool check among in-process tests) keeps it.
        if any(item.get_closest_marker(kind) for kind in KIND_MARKERS):
            continue
        item.add_marker(KINDS.get(item.path.stem, "e2e"))
