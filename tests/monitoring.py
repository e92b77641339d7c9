"""What the monitoring tests share: the metric names the program exports, which names a PromQL
expression uses, the dashboard's queries, the alert rules, and a real Prometheus to run."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support import free_port, http, wait_for
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "monitoring" / "dashboard.json"
RULES = ROOT / "monitoring" / "alerts.rules.yaml"

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
# The injector's (SPEC.md "Wiring any workload"): reviews by result, and their duration;
# tests/test_injector.py scrapes them from a running injector.
INJECTOR_SERIES = frozenset(
    {"layers_injector_reviews_total"}
    | {f"layers_injector_review_duration_seconds{s}" for s in ("_bucket", "_sum", "_count")}
)
# The "more signals" of `serve`: the current not-ready reason and whether the key file reads.
MORE_GAUGES = frozenset({"layers_readiness_reason", "layers_api_key_available"})
# What a query may name: those, and `up` (Prometheus's own, for the scrape itself).
QUERYABLE = SERIES_NAMES | MORE_GAUGES | HUB_SERIES | INJECTOR_SERIES | {"up"}

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


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in alerts()]


# --- a real Prometheus ---------------------------------------------------------------------------

MONITORING = ROOT / "monitoring"
JOB = "layers-readiness"
NAMESPACE, POD, CONTAINER = "e2e", "layers-e2e-0", "layers-sidecar"

# What Kubernetes pod discovery would attach to the sidecar's port; the job's relabel_configs
# keep the target by the port name and turn these into the namespace, pod and container labels.
POD_DISCOVERY_LABELS = {
    "__meta_kubernetes_namespace": NAMESPACE,
    "__meta_kubernetes_pod_name": POD,
    "__meta_kubernetes_pod_container_name": CONTAINER,
    "__meta_kubernetes_pod_container_port_name": "layers-http",
    "__meta_kubernetes_pod_phase": "Running",
}


def e2e_config(
    target: str, *more: str, hub: str | None = None, rules: Path = RULES
) -> dict[str, Any]:
    """monitoring/prometheus.yml, changed only as its header says, scraping the sidecars at
    `target` (pod POD) and `more` (pods POD-1, ...), and the hub at `hub` when given; `rules`
    is the rules file it loads (the shipped one unless a test tunes a copy)."""
    config: dict[str, Any] = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    assert config["rule_files"] == ["alerts.rules.yaml"]
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs[JOB]
    assert "scrape_interval" not in job, "the job would override the test's 1s interval"
    del job["kubernetes_sd_configs"]
    job["static_configs"] = [{"targets": [target], "labels": POD_DISCOVERY_LABELS}] + [
        {
            "targets": [other],
            "labels": {**POD_DISCOVERY_LABELS, "__meta_kubernetes_pod_name": f"{POD}-{n}"},
        }
        for n, other in enumerate(more, 1)
    ]
    hub_job = jobs[HUB_JOB]
    if hub is None:
        config["scrape_configs"].remove(hub_job)
    else:
        assert "scrape_interval" not in hub_job
        del hub_job["kubernetes_sd_configs"]
        hub_job["static_configs"] = [{"targets": [hub], "labels": HUB_DISCOVERY_LABELS}]
    return config


# ...and to the hub's (fleet mode).
HUB_JOB, HUB_NAMESPACE, HUB_POD = "layers-readiness-hub", "layers", "layers-readiness-hub-0"
HUB_DISCOVERY_LABELS = {
    "__meta_kubernetes_namespace": HUB_NAMESPACE,
    "__meta_kubernetes_pod_name": HUB_POD,
    "__meta_kubernetes_pod_container_name": "layers-readiness-hub",
    "__meta_kubernetes_pod_container_port_name": "hub-http",
    "__meta_kubernetes_pod_phase": "Running",
}


@contextmanager
def daemon(name: str, argv: list[str], port: int, log: Path) -> Iterator[str]:
    """A Prometheus-family server (Prometheus, Alertmanager) started from `argv`, listening on
    `port`, ready when its /-/ready says 200; its output in `log`; stopped on the way out."""
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}: {log.read_text()}")
            return http("GET", url + "/-/ready", timeout=1).status == 200

        wait_for(ready, timeout=20, what=f"{name} to be ready")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def prometheus(tmp: Path, config: dict[str, Any], *flags: str) -> Iterator[str]:
    """Prometheus on a free loopback port with its own TSDB under `tmp`; killed on the way out.
    `flags` are added to its command line."""
    binary, promtool = tool("prometheus"), tool("promtool")
    config_file = tmp / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    checked = subprocess.run(
        [promtool, "check", "config", str(config_file)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    port = free_port()
    with daemon(
        "prometheus",
        [
            binary,
            f"--config.file={config_file}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            *flags,
        ],
        port,
        tmp / "prometheus.log",
    ) as url:
        yield url


def api(url: str, path: str, **params: str) -> Any:
    reply = http("GET", f"{url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body["status"] == "success", body
    return body["data"]
