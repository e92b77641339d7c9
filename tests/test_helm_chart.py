"""The Helm chart, rendered by the real Helm engine (helm-python-sdk: Helm v4's Go code).

For every `ci/*-values.yaml` scenario: Helm's lint is clean, the chart renders, and every object
is valid for Kubernetes 1.29 and the newest version kubernetes-validate knows (strict). Then what
the rendering must say: secure defaults, monitoring off unless asked, each wiring mode, the
values schema refusing typos, and the named templates working from another chart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from tests.k8s import (
    CHART_DIR,
    IMAGE_UID,
    K8S_VERSIONS,
    ROOT,
    Obj,
    all_containers,
    container,
    env_value,
    load_documents,
    parent_chart,
    pod_spec,
    render_chart,
    render_notes,
    resolve_port,
    secret_file,
    secret_value,
    validate,
)

CI_FILES = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
SCENARIOS = {path.name.removesuffix("-values.yaml"): path for path in CI_FILES}
KEY_FILE = "/etc/layers-readiness/api-key"

# The only finding lint may report: an informational nudge to add an icon URL, which a chart
# without a published home has nothing honest to point at.
ALLOWED_LINT = {(1, "Chart.yaml", "icon is recommended")}


def scenario_values(name: str) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(SCENARIOS[name].read_text()) or {}
    return values


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    """Every scenario rendered once: scenario -> all objects."""
    return {
        name: [obj for objects in render_chart(scenario_values(name)).values() for obj in objects]
        for name in SCENARIOS
    }


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def the_deployment(objects: list[Obj]) -> Obj:
    (deployment,) = of_kind(objects, "Deployment")
    return deployment


def test_ci_scenarios_cover_the_features() -> None:
    assert {
        "default",
        "classic",
        "monitoring",
        "secret-and-settings",
        "templates-only",
        "native-no-app-probe",
        "podmonitor-joblabel",
        "platform",
        "job",
    } <= set(SCENARIOS)


def test_chart_metadata() -> None:
    with helm_python.Chart.load(CHART_DIR) as chart:
        metadata = chart.metadata
        assert chart.schema is not None
    assert metadata["name"] == "layers-readiness"
    assert metadata["apiVersion"] == "v2"
    assert metadata["appVersion"] == "0.1.0"
    # The tag a parent chart gets (it cannot see this chart's appVersion) is kept equal to it.
    wiring = (CHART_DIR / "templates" / "_wiring.tpl").read_text()
    match = re.search(r'define "layers-readiness.defaultAppVersion" -}}\s*(\S+)\s*{{', wiring)
    assert match is not None
    assert match.group(1) == metadata["appVersion"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_is_clean(scenario: str) -> None:
    report = helm_python.lint(CHART_DIR, scenario_values(scenario), strict=True)
    findings = {(m["severity"], m["path"], m["error"]) for m in report["messages"]}
    assert findings <= ALLOWED_LINT, report["messages"]
    assert report["errors"] == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_is_valid(
    rendered: dict[str, list[Obj]], scenario: str, version: str
) -> None:
    assert rendered[scenario]
    for obj in rendered[scenario]:
        validate(obj, version)


def test_defaults_render_the_example_and_no_monitoring(rendered: dict[str, list[Obj]]) -> None:
    kinds = sorted(o["kind"] for o in rendered["default"])
    assert kinds == ["Deployment", "Service", "ServiceAccount"]
    # No Secret either: by default the key comes from a Secret the user creates.


def test_secure_defaults(rendered: dict[str, list[Obj]]) -> None:
    deployment = the_deployment(rendered["default"])
    spec = pod_spec(deployment)
    assert spec["automountServiceAccountToken"] is False
    (account,) = of_kind(rendered["default"], "ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == IMAGE_UID
    assert pod["fsGroup"] == IMAGE_UID
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for _, c in all_containers(spec):
        context = c["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["runAsNonRoot"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["limits"]["memory"]


def test_native_mode_is_the_default(rendered: dict[str, list[Obj]]) -> None:
    spec = pod_spec(the_deployment(rendered["default"]))
    check, sidecar = spec["initContainers"]
    assert (check["name"], check["args"]) == ("layers-readiness-check", ["check", "--wait"])
    # No deadline by default: `check --wait` holds the pod in Init, without restarts.
    assert env_value(check, "LAYERS_SIDECAR_DEADLINE") is None
    assert sidecar["name"] == "layers-readiness-serve"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["serve"]
    assert sidecar["image"] == "localhost/layers-readiness:0.1.0"
    listen = env_value(sidecar, "LAYERS_SIDECAR_LISTEN")
    assert listen == "0.0.0.0:9476"
    probes = {"startupProbe": "/livez", "readinessProbe": "/readyz", "livenessProbe": "/livez"}
    for probe, path in probes.items():
        assert sidecar[probe]["httpGet"]["path"] == path
        assert resolve_port(sidecar, sidecar[probe]["httpGet"]["port"]) == 9476
    assert sidecar["readinessProbe"]["failureThreshold"] == 2
    assert [c["name"] for c in spec["containers"]] == ["app"]
    # The application keeps its own probes: none replaced by default.
    assert "readinessProbe" not in spec["containers"][0]


def test_classic_mode(rendered: dict[str, list[Obj]]) -> None:
    spec = pod_spec(the_deployment(rendered["classic"]))
    (check,) = spec["initContainers"]
    assert check["name"] == "layers-readiness-check"
    assert check["args"] == ["check", "--wait"]
    assert "restartPolicy" not in check
    assert env_value(check, "LAYERS_SIDECAR_DEADLINE") == "2m"
    assert env_value(check, "LAYERS_SIDECAR_LISTEN") is None
    assert [c["name"] for c in spec["containers"]] == ["app", "layers-readiness-serve"]
    sidecar = container(spec, "layers-readiness-serve")
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/livez"
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The opt-in application probe (this scenario turns it on) asks the sidecar's port.
    assert spec["containers"][0]["readinessProbe"]["httpGet"]["port"] == 9476


def test_app_probe_can_be_left_out(rendered: dict[str, list[Obj]]) -> None:
    spec = pod_spec(the_deployment(rendered["native-no-app-probe"]))
    assert "readinessProbe" not in spec["containers"][0]
    for sidecar in spec["initContainers"]:
        assert sidecar["image"].endswith("@sha256:" + "0" * 64)


@pytest.mark.parametrize("scenario", ["default", "classic", "secret-and-settings"])
def test_key_is_a_mounted_secret_file(rendered: dict[str, list[Obj]], scenario: str) -> None:
    objects = rendered[scenario]
    spec = pod_spec(the_deployment(objects))
    for _, c in all_containers(spec):
        if not c["name"].startswith("layers-readiness"):
            continue
        assert env_value(c, "LAYERS_API_KEY") is None
        assert env_value(c, "LAYERS_API_KEY_FILE") == KEY_FILE
        assert secret_file(objects, spec, c, KEY_FILE) is not None
    (volume,) = [v for v in spec["volumes"] if v["name"] == "layers-readiness-api-key"]
    # Readable without fsGroup; the whole Secret, so a rotation reaches the file.
    assert volume["secret"]["defaultMode"] == 0o444
    assert "items" not in volume["secret"]


def test_chart_can_create_the_secret(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["secret-and-settings"]
    (secret,) = of_kind(objects, "Secret")
    assert secret["metadata"]["name"] == "layers-api-key-ci"
    assert secret_value(secret, "api-key") == "lp_test_k1_FAKEsecretFAKE"
    spec = pod_spec(the_deployment(objects))
    sidecar = container(spec, "layers-readiness-serve")
    found = secret_file(objects, spec, sidecar, KEY_FILE)
    assert found is not None
    assert found[0] is secret
    assert env_value(sidecar, "LAYERS_AUTH_SCHEME") == "bearer"
    assert env_value(sidecar, "LAYERS_SIDECAR_MIN_CREDITS") == "100"
    assert env_value(sidecar, "LAYERS_SIDECAR_STALE_AFTER") == "0"
    assert env_value(sidecar, "HTTPS_PROXY") == "http://proxy.example.invalid:3128"
    # No checksum annotation: a rotated key must not restart the pods.
    annotations = the_deployment(objects)["spec"]["template"]["metadata"].get("annotations", {})
    assert not any(k.startswith("checksum/") for k in annotations)


def test_monitoring_objects(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["monitoring"]
    (monitor,) = of_kind(objects, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    deployment = the_deployment(objects)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert pod_labels[key] == value
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    sidecar = container(pod_spec(deployment), "layers-readiness-serve")
    assert resolve_port(sidecar, endpoint["port"]) == 9476

    (rule,) = of_kind(objects, "PrometheusRule")
    source = yaml.safe_load((CHART_DIR / "files" / "alerts.rules.yaml").read_text())
    # the same alerts, scoped and tuned (tests/test_chart_alerts.py runs them), less the one
    # the scenario disables, and the hub's and the injector's (neither here:
    # tests/test_helm_hub.py and tests/test_helm_injector.py have them)
    assert [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]] == [
        r["alert"]
        for g in source["groups"]
        if g["name"] not in ("layers-readiness-hub", "layers-readiness-injector")
        for r in g["rules"]
        if r["alert"] != "LayersCreditsExhaustionForecast"
    ]
    assert rule["metadata"]["namespace"] == "monitoring"

    (dashboard,) = of_kind(objects, "ConfigMap")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["namespace"] == "monitoring"
    (body,) = dashboard["data"].values()
    source = json.loads((CHART_DIR / "files" / "dashboard.json").read_text())
    # the same dashboard under the uid and title this release sets
    assert json.loads(body) == {
        **source,
        "uid": "layers-readiness-payments",
        "title": "Layers readiness (payments)",
    }


def test_templates_only_renders_no_workload(rendered: dict[str, list[Obj]]) -> None:
    assert sorted(o["kind"] for o in rendered["templates-only"]) == ["PodMonitor"]


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"podMonitr": {"enabled": True}}, "podMonitr"),
        ({"wiring": {"mode": "sidecar"}}, "/wiring/mode"),
        ({"settings": {"interval": "often"}}, "/settings/interval"),
        ({"settings": {"authScheme": "basic"}}, "/settings/authScheme"),
        ({"apiKey": {"create": True}}, "/apiKey/value"),
        ({"port": 80}, "/port"),
        ({"portName": "a-port-name-that-is-too-long"}, "/portName"),
        ({"podMonitor": {"enabled": True, "interval": "30 seconds"}}, "/podMonitor/interval"),
        ({"extraArgs": "--log-level=debug"}, "/extraArgs"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "/extraVolumeMounts/0"),
        (
            {"podDisruptionBudget": {"enabled": True, "minAvailable": "half"}},
            "/podDisruptionBudget",
        ),
        ({"networkPolicy": {"enabled": True, "egres": []}}, "egres"),
        ({"grafanaDashboard": {"enabled": True, "uid": "x" * 41}}, "/grafanaDashboard/uid"),
    ],
)
def test_schema_refuses_mistakes(values: dict[str, Any], complaint: str) -> None:
    with (
        helm_python.Chart.load(CHART_DIR) as chart,
        pytest.raises(helm_python.HelmValuesError) as caught,
    ):
        chart.render(values, name="demo", namespace="apps")
    assert complaint in str(caught.value)


def test_same_port_for_app_and_sidecar_is_refused() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"example\.port must differ"):
        render_chart({"example": {"port": 9476}})


def test_notes_say_how_to_reach_the_sidecar() -> None:
    notes = render_notes({})
    assert "port-forward deploy/demo-layers-readiness 9476:9476" in notes
    assert "create secret generic layers-api-key" in notes
    assert "native" in notes
    classic = render_notes({"wiring": {"mode": "classic"}})
    assert "layers-readiness-check" in classic


# --- the named templates from another chart ------------------------------------------------------

# (`clusterVersion` lets a test pretend to be an older cluster; offline rendering has no flag.)
PARENT_DEPLOYMENT = """\
{{- $kube := .Values.clusterVersion | default .Capabilities.KubeVersion.Version }}
{{- $lr := dict "values" (index .Values "layers-readiness") "kubeVersion" $kube }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-shop
spec:
  selector:
    matchLabels:
      app: shop
  template:
    metadata:
      labels:
        app: shop
        {{- include "layers-readiness.podLabels" $lr | nindent 8 }}
    spec:
      initContainers:
        {{- include "layers-readiness.initContainers" $lr | nindent 8 }}
      containers:
        - name: shop
          image: registry.example.com/shop:1.2.3
          readinessProbe:
            httpGet:
              path: /healthz
              port: 8080
        {{- with include "layers-readiness.containers" $lr }}
        {{- . | nindent 8 }}
        {{- end }}
      volumes:
        {{- include "layers-readiness.volume" $lr | nindent 8 }}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's chart with layers-readiness as a dependency, using the named templates."""
    return parent_chart(
        tmp_path_factory.mktemp("parent"),
        values="layers-readiness:\n  example:\n    enabled: false\n",
        deployment=PARENT_DEPLOYMENT,
        app_version="9.9.9",
    )


@pytest.mark.parametrize("mode", ["native", "classic"])
def test_named_templates_work_from_a_parent_chart(shop: Path, mode: str) -> None:
    with helm_python.Chart.load(shop) as chart:
        rendered = chart.render(
            {"layers-readiness": {"wiring": {"mode": mode}}}, name="web", namespace="shop"
        )
    objects = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in load_documents(text)
    ]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == "web-shop"  # the parent's, not the example
    for version in K8S_VERSIONS:
        validate(deployment, version)
    spec = pod_spec(deployment)
    sidecar = container(spec, "layers-readiness-serve")
    # The parent's appVersion (9.9.9) must not leak into the sidecar's image tag.
    assert sidecar["image"] == "localhost/layers-readiness:0.1.0"
    # The application's own probe (on 8080) is its own, and nothing of ours is on 8080.
    assert spec["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert deployment["spec"]["template"]["metadata"]["labels"]["layers-readiness/wired"] == "true"
    assert spec["initContainers"][0]["name"] == "layers-readiness-check"
    if mode == "native":
        assert spec["initContainers"][1]["restartPolicy"] == "Always"
        assert [c["name"] for c in spec["containers"]] == ["shop"]
    else:
        assert [c["name"] for c in spec["containers"]] == ["shop", "layers-readiness-serve"]


def test_native_mode_refused_below_kubernetes_1_29(shop: Path) -> None:
    with helm_python.Chart.load(shop) as chart:
        with pytest.raises(helm_python.HelmRenderError, match=r"need Kubernetes 1\.29"):
            chart.render({"clusterVersion": "v1.28.3"}, name="web")
        classic = {"clusterVersion": "v1.28.3", "layers-readiness": {"wiring": {"mode": "classic"}}}
        assert chart.render(classic, name="web")


# --- what a platform team sets without forking ---------------------------------------------------


def test_chart_metadata_claims_no_home_it_does_not_have() -> None:
    # The project has no public home yet: `make release` adds `home` and `sources` to the packaged
    # chart from the one setting ([tool.layers-readiness] home), never a made-up URL here.
    with helm_python.Chart.load(CHART_DIR) as chart:
        metadata = chart.metadata
    assert "home" not in metadata
    assert "sources" not in metadata
    assert all("url" not in m for m in metadata["maintainers"])


def test_platform_values_reach_every_layers_container(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["platform"]
    deployment = the_deployment(objects)
    spec = pod_spec(deployment)
    ours = [c for _, c in all_containers(spec) if c["name"].startswith("layers-readiness")]
    # the init container `check` and the classic sidecar alike
    assert sorted(c["name"] for c in ours) == ["layers-readiness-check", "layers-readiness-serve"]
    for c in ours:
        assert c["image"] == "registry.internal.example.com/layers-readiness:0.1.0"
        assert c["envFrom"] == [{"configMapRef": {"name": "egress-proxy"}}]
        assert env_value(c, "SSL_CERT_FILE") == "/etc/ssl/corporate/ca-bundle.crt"
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        assert mounts["corporate-ca"] == "/etc/ssl/corporate"
        assert c["args"][-1] == "--log-level=debug"
    # the example application comes from the same mirror
    assert (
        container(spec, "app")["image"] == "registry.internal.example.com/hashicorp/http-echo:1.0"
    )
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["corporate-ca"]["configMap"]["name"] == "corporate-ca-bundle"
    assert spec["priorityClassName"] == "business-critical"
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    assert deployment["spec"]["revisionHistoryLimit"] == 3
    assert deployment["metadata"]["annotations"] == {"reloader.example.com/auto": "false"}
    (service,) = of_kind(objects, "Service")
    assert service["metadata"]["annotations"] == {"service.example.com/owner": "payments"}


def test_disruption_budget_and_network_policy_select_the_pods(
    rendered: dict[str, list[Obj]],
) -> None:
    objects = rendered["platform"]
    pod_labels = the_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    (budget,) = of_kind(objects, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    (policy,) = of_kind(objects, "NetworkPolicy")
    for selector in (budget["spec"]["selector"], policy["spec"]["podSelector"]):
        assert selector["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    scrape, app = policy["spec"]["ingress"]
    assert scrape["ports"] == [{"port": 9476, "protocol": "TCP"}]
    assert scrape["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }
    assert app["ports"] == [{"port": 5678, "protocol": "TCP"}]
    dns, proxy = policy["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert proxy["ports"] == [{"port": 3128, "protocol": "TCP"}]
    # off by default
    assert not of_kind(rendered["default"], "PodDisruptionBudget")
    assert not of_kind(rendered["default"], "NetworkPolicy")


def test_disruption_budget_takes_exactly_one_bound() -> None:
    with pytest.raises(helm_python.HelmRenderError, match="exactly one of minAvailable"):
        render_chart({"podDisruptionBudget": {"enabled": True, "maxUnavailable": 1}})


def test_podmonitor_options(rendered: dict[str, list[Obj]]) -> None:
    (monitor,) = of_kind(rendered["monitoring"], "PodMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    # it lives beside Prometheus but selects the release's pods, and only them
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["apps"]}
    assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"
    assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/name"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"]["serverName"] == "layers-readiness.apps.svc"
    assert endpoint["honorLabels"] is True
    # Pending pods stay scraped (a native sidecar holds its pod there at start-up)
    assert endpoint.get("filterRunning", True) is True
    (by_label,) = of_kind(rendered["podmonitor-joblabel"], "PodMonitor")
    assert by_label["spec"]["jobLabel"] == "app.kubernetes.io/name"
    assert "app.kubernetes.io/instance" not in by_label["spec"]["selector"]["matchLabels"]


def test_example_job_always_ends(rendered: dict[str, list[Obj]]) -> None:
    objects = rendered["job"]
    assert sorted(o["kind"] for o in objects) == ["Job", "ServiceAccount"]
    (job,) = of_kind(objects, "Job")
    # Ends whatever happens; the gate's wait is bounded below that.
    assert job["spec"]["activeDeadlineSeconds"] == 900
    spec = pod_spec(job)
    assert spec["restartPolicy"] == "Never"
    (check,) = spec["initContainers"]
    assert check["args"] == ["check", "--wait"]
    assert env_value(check, "LAYERS_SIDECAR_DEADLINE") == "5m"
    # Classic mode in a Job: the gate only, nothing of ours that could keep the pod running.
    (work,) = spec["containers"]
    assert "reporting the day's numbers" in work["command"][-1]
    assert not of_kind(rendered["default"], "Job")


def test_example_job_in_native_mode_keeps_a_native_sidecar_that_ends_with_it() -> None:
    objects = render_chart({"example": {"enabled": False}, "exampleJob": {"enabled": True}})
    (job,) = [o for docs in objects.values() for o in docs if o["kind"] == "Job"]
    spec = pod_spec(job)
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [
        ("layers-readiness-check", None),
        ("layers-readiness-serve", "Always"),
    ]
    assert [c["name"] for c in spec["containers"]] == ["work"]


def test_values_table_in_the_readme_is_current() -> None:
    """The chart README's values table is generated from values.yaml; CI fails when stale."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-chart-readme"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    readme = (CHART_DIR / "README.md").read_text()
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    for key in values:
        assert f"| `{key}` |" in readme or f"| `{key}." in readme, f"{key} is not in the table"


def test_values_table_notices_a_new_value(tmp_path: Path) -> None:
    chart = tmp_path / "helm" / "layers-readiness"
    shutil.copytree(CHART_DIR, chart)
    values = chart / "values.yaml"
    values.write_text(values.read_text() + "\n## A value nobody documented yet.\nnewValue: 1\n")
    script = str(ROOT / "scripts" / "gen-chart-readme")
    check = [sys.executable, script, "--root", str(tmp_path), "--check"]
    stale = subprocess.run(check, capture_output=True, text=True, timeout=60, check=False)
    assert stale.returncode == 1
    assert "stale: helm/layers-readiness/README.md" in stale.stderr
    subprocess.run([*check[:-1]], capture_output=True, timeout=60, check=True)
    assert (
        "| `newValue` | `1` | A value nobody documented yet. |" in (chart / "README.md").read_text()
    )


def test_a_parent_chart_s_global_image_registry_reaches_the_sidecar(shop: Path) -> None:
    with helm_python.Chart.load(shop) as chart:
        rendered = chart.render(
            {"global": {"imageRegistry": "mirror.example.com"}}, name="web", namespace="shop"
        )
    objects = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in load_documents(text)
    ]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    sidecar = container(pod_spec(deployment), "layers-readiness-serve")
    assert sidecar["image"] == "mirror.example.com/layers-readiness:0.1.0"
