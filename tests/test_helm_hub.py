"""Fleet mode in the Helm chart (`hub.*`), rendered by the real Helm engine.

The ci scenarios `hub` (native wiring) and `hub-tls` (classic wiring, HTTPS) are linted and
validated against the Kubernetes schemas by tests/test_helm_chart.py with every other scenario.
Here: what the rendering must mean. The hub runs `layers-sidecar hub` with its settings as
variables, securely, spread and protected; its Service, PodMonitor and NetworkPolicy find it and
nothing else; and every wired container calls that Service first and the real API as fallback.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import helm_python
import pytest
import yaml

from tests.k8s import (
    CHART_DIR,
    IMAGE_UID,
    K8S_VERSIONS,
    Obj,
    admits,
    all_containers,
    env_value,
    load_documents,
    parent_chart,
    pod_labels,
    pod_spec,
    render_chart,
    render_notes,
    resolve_port,
    secret_file,
    selects,
    validate,
)
from tests.tools import tool

REAL_API = "https://api.layers.com"
NAMESPACE = "apps"
HUB = "demo-layers-readiness-hub"
WIRED = ("layers-readiness-serve", "layers-readiness-check")


def scenario(name: str, **overrides: Any) -> list[Obj]:
    values: dict[str, Any] = yaml.safe_load((CHART_DIR / "ci" / f"{name}-values.yaml").read_text())
    values.update(overrides)
    return [
        obj for objects in render_chart(values, namespace=NAMESPACE).values() for obj in objects
    ]


@pytest.fixture(scope="module")
def hub() -> list[Obj]:
    return scenario("hub")


@pytest.fixture(scope="module")
def hub_tls() -> list[Obj]:
    return scenario("hub-tls")


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def hub_deployment(objects: list[Obj]) -> Obj:
    return named(objects, "Deployment", HUB)


def hub_container(objects: list[Obj]) -> Obj:
    (c,) = pod_spec(hub_deployment(objects))["containers"]
    found: Obj = c
    return found


def example(objects: list[Obj]) -> Obj:
    return named(objects, "Deployment", "demo-layers-readiness")


def wired(objects: list[Obj]) -> list[Obj]:
    return [c for _, c in all_containers(pod_spec(example(objects))) if c["name"] in WIRED]


# --- off by default -----------------------------------------------------------------------------


def test_no_hub_and_no_fallback_by_default() -> None:
    objects = [o for objs in render_chart({}).values() for o in objs]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-hub")]
    for c in wired(objects):
        assert env_value(c, "LAYERS_API_URL") == REAL_API
        assert env_value(c, "LAYERS_FALLBACK_API_URL") is None


# --- the hub itself -----------------------------------------------------------------------------


def test_hub_objects(hub: list[Obj]) -> None:
    kinds = sorted(o["kind"] for o in hub if o["metadata"]["name"] == HUB)
    assert kinds == ["Deployment", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "Service"]


def test_hub_runs_the_hub_command_with_its_settings(hub: list[Obj]) -> None:
    c = hub_container(hub)
    assert c["name"] == "layers-readiness-hub"
    assert c["args"] == ["hub"]
    assert "command" not in c  # the image's ENTRYPOINT, layers-sidecar
    assert c["image"] == "localhost/layers-readiness:0.1.0"
    env = {item["name"]: item["value"] for item in c["env"]}
    # ci/hub-values.yaml moves every setting away from its default.
    # The hub's own variables, so that the sidecars' LAYERS_API_URL (the hub) never reaches it.
    assert env["LAYERS_HUB_API_URL"] == REAL_API
    assert env["LAYERS_HUB_TTL"] == "10s"
    assert env["LAYERS_HUB_MAX_KEYS"] == "5000"
    assert env["LAYERS_HUB_MAX_UPSTREAM_RATE"] == "50"
    assert env["LAYERS_HUB_TIMEOUT"] == "4s"
    assert env["LAYERS_HUB_LISTEN"] == "0.0.0.0:8080"
    assert not {"LAYERS_API_URL", "LAYERS_SIDECAR_TIMEOUT", "LAYERS_SIDECAR_LISTEN"} & set(env)
    assert env["HTTPS_PROXY"] == "http://proxy.example.invalid:3128"
    # The hub holds no key of its own, and serves plain HTTP only when TLS is turned off.
    assert not {"LAYERS_API_KEY", "LAYERS_API_KEY_FILE", "LAYERS_FALLBACK_API_URL"} & set(env)
    assert not {"LAYERS_HUB_TLS_CERT_FILE", "LAYERS_HUB_TLS_KEY_FILE"} & set(env)
    assert "volumeMounts" not in c


def test_hub_probes_ask_the_hub(hub: list[Obj]) -> None:
    c = hub_container(hub)
    listen = int((env_value(c, "LAYERS_HUB_LISTEN") or "").rsplit(":", 1)[-1])
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert get["scheme"] == "HTTP"
        assert resolve_port(c, get["port"]) == listen


def test_hub_is_locked_down_like_the_sidecar(hub: list[Obj]) -> None:
    spec = pod_spec(hub_deployment(hub))
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == IMAGE_UID
    context = hub_container(hub)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["runAsNonRoot"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    resources = hub_container(hub)["resources"]
    assert resources["limits"]["memory"]
    assert resources["requests"]["cpu"]


def test_hub_stays_available(hub: list[Obj]) -> None:
    deployment = hub_deployment(hub)
    replicas = deployment["spec"]["replicas"]
    assert replicas == 3
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = pod_labels(deployment)
    assert selects(deployment["spec"]["selector"], labels)
    # Spread: one replica a node at most more than another, and never blocked by a cordon.
    constraints = pod_spec(deployment)["topologySpreadConstraints"]
    by_key = {c["topologyKey"]: c for c in constraints}
    node = by_key["kubernetes.io/hostname"]
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    assert node["maxSkew"] == 1
    assert node["nodeTaintsPolicy"] == "Honor"
    assert "topology.kubernetes.io/zone" in by_key
    for constraint in constraints:
        assert selects(constraint["labelSelector"], labels)
    pdb = named(hub, "PodDisruptionBudget", HUB)
    assert selects(pdb["spec"]["selector"], labels)
    assert 0 < pdb["spec"]["minAvailable"] < replicas


def test_hub_and_example_never_select_each_other(hub: list[Obj]) -> None:
    hub_pods = pod_labels(hub_deployment(hub))
    app_pods = pod_labels(example(hub))
    assert not selects(example(hub)["spec"]["selector"], hub_pods)
    assert not selects(hub_deployment(hub)["spec"]["selector"], app_pods)
    app_service = named(hub, "Service", "demo-layers-readiness")
    assert not selects({"matchLabels": app_service["spec"]["selector"]}, hub_pods)
    hub_service = named(hub, "Service", HUB)
    assert selects({"matchLabels": hub_service["spec"]["selector"]}, hub_pods)
    assert not selects({"matchLabels": hub_service["spec"]["selector"]}, app_pods)
    # The sidecars' PodMonitor does not scrape the hub, and the hub's scrapes only the hub.
    sidecars = named(hub, "PodMonitor", "demo-layers-readiness")
    assert not selects(sidecars["spec"]["selector"], hub_pods)
    own = named(hub, "PodMonitor", HUB)
    assert selects(own["spec"]["selector"], hub_pods)
    assert not selects(own["spec"]["selector"], app_pods)
    (endpoint,) = own["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert resolve_port(hub_container(hub), endpoint["port"]) == 8080
    assert own["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_network_policy_admits_wired_pods_and_prometheus_only(hub: list[Obj]) -> None:
    policy = named(hub, "NetworkPolicy", HUB)
    assert selects(policy["spec"]["podSelector"], pod_labels(hub_deployment(hub)))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [hub_container(hub)["ports"][0]["name"]]

    def allowed(labels: dict[str, str], namespace: dict[str, str], same: bool) -> bool:
        return admits(policy, labels=labels, namespace_labels=namespace, same=same)

    wired_pod = pod_labels(example(hub))
    client_namespace = {"layers-readiness/hub-client": "true"}
    assert allowed(wired_pod, {}, same=True)
    assert allowed(wired_pod, client_namespace, same=False)
    assert not allowed(wired_pod, {}, same=False)
    assert allowed({"app.kubernetes.io/name": "prometheus"}, {"name": "monitoring"}, same=False)
    # Anything else, even the example's own labels without the wiring's label, is refused.
    unwired = {k: v for k, v in wired_pod.items() if not k.startswith("layers-readiness/")}
    assert not allowed(unwired, {}, same=True)
    assert not allowed({"app": "curl"}, client_namespace, same=False)


def test_the_example_s_own_network_policy_lets_it_reach_the_hub() -> None:
    values = {"hub": {"enabled": True}, "networkPolicy": {"enabled": True}}
    objects = [o for objs in render_chart(values, namespace=NAMESPACE).values() for o in objs]
    policy = named(objects, "NetworkPolicy", "demo-layers-readiness")
    assert "Egress" in policy["spec"]["policyTypes"]
    hub_pods = pod_labels(hub_deployment(objects))
    to_hub = [
        rule
        for rule in policy["spec"]["egress"]
        if any(selects(peer.get("podSelector"), hub_pods) for peer in rule.get("to") or [])
    ]
    assert [p["port"] for rule in to_hub for p in rule["ports"]] == [8080]


# --- the wiring ---------------------------------------------------------------------------------


def service_url(objects: list[Obj], scheme: str) -> str:
    service = named(objects, "Service", HUB)
    (port,) = service["spec"]["ports"]
    return f"{scheme}://{HUB}.{NAMESPACE}.svc:{port['port']}"


@pytest.mark.parametrize(("name", "scheme"), [("hub", "http"), ("hub-tls", "https")])
def test_every_wired_container_calls_the_hub_then_the_real_api(
    hub: list[Obj], hub_tls: list[Obj], name: str, scheme: str
) -> None:
    objects = {"hub": hub, "hub-tls": hub_tls}[name]
    containers = wired(objects)
    modes = {c["name"]: "restartPolicy" in c for c in containers}
    expected = {"layers-readiness-check": False, "layers-readiness-serve": name == "hub"}
    assert modes == expected  # the gate, then a native sidecar (hub) or a classic one (hub-tls)
    url = service_url(objects, scheme)
    for c in containers:
        assert env_value(c, "LAYERS_API_URL") == url, c["name"]
        assert env_value(c, "LAYERS_FALLBACK_API_URL") == REAL_API, c["name"]
        # hub.interval (ci/hub) applies to the sidecars that call the hub; check has none.
        if c["name"] == "layers-readiness-serve":
            interval = env_value(c, "LAYERS_SIDECAR_INTERVAL")
            assert interval == ("2s" if name == "hub" else "5s"), c["name"]
            fallback = env_value(c, "LAYERS_FALLBACK_INTERVAL")
            assert fallback == ("1m" if name == "hub" else "30s"), c["name"]
        else:
            assert env_value(c, "LAYERS_FALLBACK_INTERVAL") is None
    # The Service's port leads to the hub's listen port.
    service = named(objects, "Service", HUB)
    assert urlsplit(url).port == service["spec"]["ports"][0]["port"]
    target = service["spec"]["ports"][0]["targetPort"]
    c = hub_container(objects)
    listen = env_value(c, "LAYERS_HUB_LISTEN")
    assert listen is not None
    assert resolve_port(c, target) == int(listen.rsplit(":", 1)[1])


def test_a_hub_timeout_not_below_the_sidecars_is_refused() -> None:
    """A sidecar that times out on the hub calls Layers itself: the hub must give up first."""
    for hub_timeout, sidecar_timeout in (("10s", "10s"), ("15000ms", "10s"), ("1m", "30")):
        values = {"hub": {"enabled": True, "timeout": hub_timeout}}
        values["settings"] = {"timeout": sidecar_timeout}
        with pytest.raises(helm_python.HelmRenderError, match=r"hub\.timeout .* must be shorter"):
            render_chart(values)
    assert render_chart({"hub": {"enabled": True, "timeout": "9500ms"}})
    assert render_chart({"hub": {"enabled": True, "timeout": 2}, "settings": {"timeout": "2.5s"}})


def test_hub_url_wires_to_a_hub_elsewhere_without_deploying_one() -> None:
    url = "http://layers-hub.platform.svc:8080"
    objects = [o for objs in render_chart({"hub": {"url": url}}).values() for o in objs]
    assert not [o for o in objects if o["metadata"]["name"].endswith("-hub")]
    for c in wired(objects):
        assert env_value(c, "LAYERS_API_URL") == url
        assert env_value(c, "LAYERS_FALLBACK_API_URL") == REAL_API


def test_notes_say_where_the_sidecars_call() -> None:
    notes = render_notes({"hub": {"enabled": True}})
    assert f"call the hub at https://{HUB}.apps.svc:8080" in notes
    assert f"port-forward deploy/{HUB} 8080:8080" in notes
    assert f"get secret {HUB}-tls" in notes
    assert "WARNING" not in notes
    assert "hub at" not in render_notes({})


def test_notes_warn_when_tls_is_turned_off() -> None:
    notes = render_notes({"hub": {"enabled": True, "tls": {"enabled": False}}})
    assert f"call the hub at http://{HUB}.apps.svc:8080" in notes
    assert "WARNING: hub.tls.enabled is false" in notes
    assert "clear text" in notes


# --- TLS ----------------------------------------------------------------------------------------


def test_tls_serves_the_mounted_certificate(hub_tls: list[Obj]) -> None:
    spec = pod_spec(hub_deployment(hub_tls))
    c = hub_container(hub_tls)
    for variable, key in (
        ("LAYERS_HUB_TLS_CERT_FILE", "tls.crt"),
        ("LAYERS_HUB_TLS_KEY_FILE", "tls.key"),
    ):
        path = env_value(c, variable)
        assert path is not None, variable
        found = secret_file(hub_tls, spec, c, path)
        assert found is not None, f"nothing mounted at {path}"
        secret, mounted_key = found
        assert (secret["metadata"]["name"], mounted_key) == ("layers-hub-tls", key)
    assert c["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    # Prometheus scrapes over HTTPS and checks the certificate for the name sidecars use.
    (endpoint,) = named(hub_tls, "PodMonitor", HUB)["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert tls["serverName"] == urlsplit(service_url(hub_tls, "https")).hostname
    assert tls["ca"]["secret"] == {"name": "layers-hub-tls", "key": "ca.crt"}
    assert "insecureSkipVerify" not in tls


def test_tls_sidecars_trust_the_mounted_ca_bundle(hub_tls: list[Obj]) -> None:
    spec = pod_spec(example(hub_tls))
    volumes = {v["name"]: v for v in spec["volumes"]}
    for c in wired(hub_tls):
        path = env_value(c, "SSL_CERT_FILE")
        assert path is not None, c["name"]
        (mount,) = [
            m for m in c["volumeMounts"] if path.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        assert mount.get("readOnly") is True
        assert "subPath" not in mount
        source = volumes[mount["name"]]["configMap"]
        assert source["name"] == "layers-hub-ca-bundle"
        relative = path[len(mount["mountPath"].rstrip("/")) + 1 :]
        assert {"key": "ca-certificates.crt", "path": relative} in source["items"]


# --- the hub's alerts in the chart -------------------------------------------------------------

MONITORED_HUB = {
    "hub": {"enabled": True},
    "podMonitor": {"enabled": True},
    "prometheusRule": {"enabled": True, "creditsThreshold": 5000},
}


def rule_groups(values: dict[str, Any], *, name: str = "demo") -> dict[str, Obj]:
    objects = [
        o for objs in render_chart(values, name=name, namespace=NAMESPACE).values() for o in objs
    ]
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {group["name"]: group for group in rule["spec"]["groups"]}


def test_hub_alerts_come_with_the_hub_only() -> None:
    assert "layers-readiness-hub" not in rule_groups({"prometheusRule": {"enabled": True}})
    hub_rules = rule_groups(MONITORED_HUB)["layers-readiness-hub"]["rules"]
    assert {r["alert"] for r in hub_rules} == {
        "LayersHubDown",
        "LayersHubUpstreamErrors",
        "LayersHubKillSwitchEngaged",
        "LayersHubApiAccessRevoked",
        "LayersHubCreditsLow",
    }
    for rule in hub_rules:
        assert rule["annotations"]["runbook_url"].endswith("#" + rule["alert"].lower())


def test_hub_alerts_fire_once_per_key_for_this_release_s_hub_only(tmp_path: Path) -> None:
    """Two releases with a hub each load their rules into one Prometheus. A key's kill switch
    seen by both replicas of demo's hub is one alert from demo's rules, none from other's; the
    chart's credits threshold moves LayersHubCreditsLow too."""
    files = []
    for release in ("demo", "other"):
        groups = list(rule_groups(MONITORED_HUB, name=release).values())
        for group in groups:  # promtool compares annotations whole: these tests are about labels
            group["rules"] = [{**r, "annotations": {}} for r in group["rules"]]
        (tmp_path / f"{release}.rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
        files.append(f"{release}.rules.yaml")

    def hub_series(metric: str, pod: str, key: str, values: str) -> dict[str, str]:
        # What the Operator gives the targets of PodMonitor apps/demo-layers-readiness-hub.
        labels = (
            f'job="{NAMESPACE}/{HUB}",instance="{pod}:8080",namespace="{NAMESPACE}",pod="{pod}",'
            f'api_key_id="{key}",organization_id="2481fa5c"'
        )
        return {"series": f"{metric}{{{labels}}}", "values": values}

    key = {"severity": "critical", "namespace": NAMESPACE, "organization_id": "2481fa5c"}
    tests = {
        "rule_files": files,
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    hub_series("layers_hub_kill_switch", "hub-a", "c2037bb9", "1x10"),
                    hub_series("layers_hub_kill_switch", "hub-b", "c2037bb9", "1x10"),
                    hub_series("layers_hub_credit_balance", "hub-a", "c2037bb9", "4000x30"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "5m",
                        "alertname": "LayersHubKillSwitchEngaged",
                        "exp_alerts": [{"exp_labels": {**key, "api_key_id": "c2037bb9"}}],
                    },
                    {
                        "eval_time": "20m",
                        "alertname": "LayersHubCreditsLow",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    **key,
                                    "severity": "warning",
                                    "api_key_id": "c2037bb9",
                                }
                            }
                        ],
                    },
                ],
            }
        ],
    }
    (tmp_path / "hub.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "hub.test.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the schema ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"hub": {"enabeld": True}}, "enabeld"),
        ({"hub": {"ttl": "soon"}}, "/hub/ttl"),
        ({"hub": {"maxKeys": 0}}, "/hub/maxKeys"),
        ({"hub": {"maxUpstreamRate": 0}}, "/hub/maxUpstreamRate"),
        ({"hub": {"url": "layers-hub:8080"}}, "/hub/url"),
        ({"hub": {"url": "http://layers-hub:8080/v1/whoami"}}, "/hub/url"),
        ({"hub": {"port": 443}}, "/hub/port"),
        ({"hub": {"fallbackInterval": "soon"}}, "/hub/fallbackInterval"),
        ({"hub": {"fallbackInterval": 0}}, "/hub/fallbackInterval"),
        ({"hub": {"tls": {"validityDays": 0}}}, "/hub/tls/validityDays"),
        ({"hub": {"tls": {"certManager": {"issuerRef": {"nmae": "x"}}}}}, "nmae"),
        ({"hub": {"podDisruptionBudget": {"minAvailable": "half"}}}, "minAvailable"),
    ],
)
def test_schema_refuses_hub_mistakes(values: dict[str, Any], complaint: str) -> None:
    with (
        helm_python.Chart.load(CHART_DIR) as chart,
        pytest.raises(helm_python.HelmValuesError) as caught,
    ):
        chart.render(values, name="demo", namespace=NAMESPACE)
    assert complaint in str(caught.value)


# --- from another chart -------------------------------------------------------------------------

PARENT_DEPLOYMENT = """\
{{- $lr := dict "values" (index .Values "layers-readiness") }}
{{- if .Values.passRelease }}
{{- $lr = merge $lr (dict "release" .Release.Name "namespace" .Release.Namespace) }}
{{- end }}
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
      volumes:
        {{- include "layers-readiness.volume" $lr | nindent 8 }}
"""


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's chart with layers-readiness (and its hub) as a dependency."""
    return parent_chart(
        tmp_path_factory.mktemp("parent"),
        values="passRelease: true\n"
        "layers-readiness:\n  example:\n    enabled: false\n  hub:\n    enabled: true\n",
        deployment=PARENT_DEPLOYMENT,
    )


def test_a_parent_chart_s_pods_call_the_hub_it_deploys(shop: Path) -> None:
    with helm_python.Chart.load(shop) as chart:
        rendered = chart.render({}, name="web", namespace="shop")
    objects = [
        obj
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for obj in load_documents(text)
    ]
    for obj in objects:
        for version in K8S_VERSIONS:
            validate(obj, version)
    (service,) = of_kind(objects, "Service")
    deployment = named(objects, "Deployment", "web-shop")
    _, sidecar = pod_spec(deployment)["initContainers"]
    url = urlsplit(env_value(sidecar, "LAYERS_API_URL") or "")
    assert url.hostname == f"{service['metadata']['name']}.shop.svc"
    assert url.port == service["spec"]["ports"][0]["port"]
    assert env_value(sidecar, "LAYERS_FALLBACK_API_URL") == REAL_API
    policy = of_kind(objects, "NetworkPolicy")[0]
    assert admits(policy, labels=pod_labels(deployment), namespace_labels={}, same=True)


def test_a_parent_chart_that_does_not_pass_its_release_is_told_how(shop: Path) -> None:
    with (
        helm_python.Chart.load(shop) as chart,
        pytest.raises(helm_python.HelmRenderError, match=r"add \"release\" \.Release\.Name"),
    ):
        chart.render({"passRelease": False}, name="web", namespace="shop")
