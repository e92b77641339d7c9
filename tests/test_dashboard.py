"""monitoring/dashboard.json: it parses, is provisionable, and asks only for metrics we export."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.monitoring import (
    QUERYABLE,
    SPEC_METRICS,
    all_panels,
    dashboard_queries,
    load_dashboard,
    metric_names,
)

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"  # the product contract, beside the repository


def test_metric_names_scanner() -> None:
    assert metric_names(
        "histogram_quantile(0.9, sum by (le) (rate(layers_whoami_request_duration_seconds_bucket"
        '{job=~"$job", pod=~"$pod"}[$__rate_interval])))'
    ) == {"layers_whoami_request_duration_seconds_bucket"}
    assert metric_names(
        'count((up{a="b"} == 0) and on (job, instance) max_over_time(x_total[1h])) or vector(0)'
    ) == {"up", "x_total"}
    assert metric_names('label_values(layers_sidecar_build_info{job=~"$job"}, namespace)') == {
        "layers_sidecar_build_info"
    }
    assert metric_names("label_values(job)") == set()
    assert metric_names("predict_linear(a[6h], 24 * 3600) < 0 and on (i) b offset 3h") == {"a", "b"}
    assert metric_names('time() - c{outcome=~"x|y"} > 300') == {"c"}


def test_metric_list_matches_spec() -> None:
    if not SPEC.exists():
        pytest.skip(f"{SPEC} is not beside this checkout; the embedded metric list stands")
    text = SPEC.read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    named = set()
    for line in section.splitlines():
        if line.startswith("| `layers_"):
            named |= set(re.findall(r"`(layers_[a-z_]+)", line.split("|")[1]))
    assert named == SPEC_METRICS


def test_dashboard_parses_and_is_provisionable() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "layers-readiness"
    assert dashboard["title"]
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns ids
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "namespace", "pod", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] is True
        # "All" must also match targets without the label (a static scrape target has no pod)
        assert variables[name]["allValue"] == ".*"
    ids = [panel["id"] for panel in all_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_query_uses_the_datasource_variable() -> None:
    dashboard = load_dashboard()
    for panel in all_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] == "${datasource}", variable["name"]


def test_every_query_names_only_exported_metrics() -> None:
    used: set[str] = set()
    for where, expr in dashboard_queries(load_dashboard()):
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= QUERYABLE, f"{where}: {sorted(names - QUERYABLE)} not exported: {expr!r}"
        used |= names
    # the panels the issue asks for are there
    for name in (
        "layers_ready",
        "layers_kill_switch",
        "layers_api_access_revoked",
        "layers_credit_balance",
        "layers_rate_limit_tier",
        "layers_whoami_requests_total",
        "layers_whoami_request_duration_seconds_bucket",
    ):
        assert name in used, f"the dashboard shows nothing from {name}"


def test_every_panel_filters_by_the_selector_variables() -> None:
    for where, expr in dashboard_queries(load_dashboard()):
        if where.startswith("variable"):
            continue
        for selector in re.findall(r"\b(?:layers_\w+|up)\{([^}]*)\}", expr):
            for variable in ("job", "namespace", "pod", "instance"):
                assert f'{variable}=~"${variable}"' in selector, f"{where}: {expr!r}"
        assert not re.search(r"\b(?:layers_\w+|up)\b(?![\w{])", expr), (
            f"{where}: a selector without the job/namespace/pod filter: {expr!r}"
        )


def test_dashboard_is_read_only_and_every_stat_has_a_unit() -> None:
    dashboard = load_dashboard()
    # provisioned from a ConfigMap: edits in the UI would be lost at the next sync
    assert dashboard["editable"] is False
    stats = [panel for panel in all_panels(dashboard["panels"]) if panel["type"] == "stat"]
    assert stats
    for panel in stats:
        unit = panel["fieldConfig"]["defaults"].get("unit")
        assert unit, f"stat {panel['title']!r} has no unit"
        assert unit != "none", f"stat {panel['title']!r} says its unit is none"


def test_no_two_panels_share_a_place_on_the_grid() -> None:
    """Grafana stacks overlapping panels: one hides the other (the "Rate-limit tier" stat and
    state-timeline once sat on the same spot)."""
    boxes = []
    for panel in all_panels(load_dashboard()["panels"]):
        grid = panel["gridPos"]
        x, y = grid["x"], grid["y"]
        boxes.append((panel["title"], x, y, x + grid["w"], y + grid["h"]))
    for i, (name, x0, y0, x1, y1) in enumerate(boxes):
        assert 0 <= x0 < x1 <= 24, name
        for other, a0, b0, a1, b1 in boxes[i + 1 :]:
            overlap = x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1
            assert not overlap, f"{name!r} and {other!r} share grid cells"
