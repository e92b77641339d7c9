"""monitoring/dashboard.json: it parses, is provisionable, and asks only for metrics we export.

Also home of the metric-name checks the alert tests and the Prometheus test share: which names
the program exports (SPEC.md's metrics table) and which names a PromQL expression uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "monitoring" / "dashboard.json"
SPEC = ROOT.parent / "shared" / "SPEC.md"  # the product contract, beside the repository

# SPEC.md's metrics table, by type. `test_metric_list_matches_spec` keeps this copy honest.
GAUGES = frozenset(
    {
        "layers_ready",
        "layers_credit_balance",
        "layers_rate_limit_tier",
        "layers_kill_switch",
        "layers_api_access_revoked",
        "layers_whoami_info",
        "layers_whoami_last_success_timestamp_seconds",
        "layers_whoami_consecutive_failures",
        "layers_rate_limit_limit",
        "layers_rate_limit_remaining",
        "layers_sidecar_build_info",
    }
)
COUNTERS = frozenset({"layers_whoami_requests_total"})
HISTOGRAMS = frozenset({"layers_whoami_request_duration_seconds"})
SPEC_METRICS = GAUGES | COUNTERS | HISTOGRAMS

# The series names Prometheus stores for them: a histogram is its _bucket, _sum and _count.
SERIES_NAMES = (
    GAUGES
    | COUNTERS
    | {f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")}
)
# The hub's (SPEC.md "Fleet mode"), as Prometheus stores them: per key, not per pod.
HUB_SERIES = frozenset(
    {
        "layers_hub_requests_total",
        "layers_hub_upstream_requests_total",
        "layers_hub_keys",
        "layers_hub_credit_balance",
        "layers_hub_kill_switch",
        "layers_hub_api_access_revoked",
    }
    | {f"layers_hub_upstream_request_duration_seconds{s}" for s in ("_bucket", "_sum", "_count")}
)
# What a query may name: those, and `up` (Prometheus's own, for the scrape itself).
QUERYABLE = SERIES_NAMES | HUB_SERIES | {"up"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
# by (...), without (...), on (...), ignoring (...), group_left (...), group_right (...)
_LABEL_LISTS = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
# Grafana's variable functions; their label arguments are not metric names.
_LABEL_VALUES = re.compile(r"label_values\s*\((?:(.*),)?\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or Grafana `label_values(...)` query) uses.

    A deliberately small scanner rather than a parser: strings, label matchers, ranges, grouping
    label lists and function names are removed; what is left of the identifiers are metrics.
    Grafana variables (`$pod`, `$__rate_interval`) only ever stand inside matchers or ranges here.
    """
    text = expr.strip()
    grafana = _LABEL_VALUES.match(text)
    if grafana:
        text = grafana.group(1) or ""
    text = _STRING.sub('""', text)
    while True:  # matchers do not nest, but strip until stable anyway
        stripped = _MATCHERS.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    text = _RANGE.sub(" ", text)
    text = _LABEL_LISTS.sub(" ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?(?:[smhdwy]|ms)?\b", " ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in all_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']}", text


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
    for name in ("job", "namespace", "pod"):
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
            for variable in ("job", "namespace", "pod"):
                assert f'{variable}=~"${variable}"' in selector, f"{where}: {expr!r}"
        assert not re.search(r"\b(?:layers_\w+|up)\b(?![\w{])", expr), (
            f"{where}: a selector without the job/namespace/pod filter: {expr!r}"
        )
