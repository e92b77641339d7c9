"""`deploy/components/hub`: fleet mode with kustomize, built by `kubectl kustomize`.

Every build is validated against the Kubernetes schemas by tests/test_deploy_manifests.py (the
hub example included). Here: the component deploys a hub that is locked down, spread and
protected, that its Service, PodMonitor and NetworkPolicy find (and nothing else), and it
points every wired container, in both wiring patterns, at that Service with the real API as
fallback; without it, nothing calls a hub.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from sidecar.commands import load, load_command
from tests.k8s import (
    DEPLOY_DIR,
    IMAGE_UID,
    K8S_VERSIONS,
    Obj,
    admits,
    all_containers,
    container_env,
    kustomize,
    pod_labels,
    pod_spec,
    resolve_port,
    selects,
    validate,
)

REAL_API = "https://api.layers.com"
HUB = "layers-readiness-hub"
WIRED = ("layers-readiness-serve", "layers-readiness-check")
IMAGE = "localhost/layers-readiness:0.1.0"


def classic_with_hub(tmp: Path) -> Path:
    """A user's kustomization beside deploy/'s examples (kustomize refuses absolute paths):
    pattern 1 (check + classic sidecar) with the hub component."""
    shutil.copytree(DEPLOY_DIR, tmp / "deploy")
    directory = tmp / "deploy" / "examples" / "classic-hub"
    directory.mkdir()
    (directory / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../../app"],
                "components": ["../../components/classic", "../../components/hub"],
            }
        )
    )
    return directory


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Obj]]:
    return {
        "native": kustomize(DEPLOY_DIR / "examples" / "hub"),
        "classic": kustomize(classic_with_hub(tmp_path_factory.mktemp("kustomize"))),
        "native-direct": kustomize(DEPLOY_DIR / "examples" / "native-sidecar"),
        "classic-direct": kustomize(DEPLOY_DIR / "examples" / "classic"),
        "prometheus": kustomize(DEPLOY_DIR / "prometheus"),
    }


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def app(objects: list[Obj]) -> Obj:
    return named(objects, "Deployment", "example-app")


def hub(objects: list[Obj]) -> Obj:
    return named(objects, "Deployment", HUB)


def hub_container(objects: list[Obj]) -> Obj:
    (c,) = pod_spec(hub(objects))["containers"]
    found: Obj = c
    return found


def wired(objects: list[Obj]) -> list[Obj]:
    return [c for _, c in all_containers(pod_spec(app(objects))) if c["name"] in WIRED]


def test_the_component_and_its_example_exist() -> None:
    document = yaml.safe_load(
        (DEPLOY_DIR / "components" / "hub" / "kustomization.yaml").read_text()
    )
    assert document["kind"] == "Component"
    assert (DEPLOY_DIR / "examples" / "hub" / "kustomization.yaml").is_file()


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_classic_build_with_the_hub_is_valid(built: dict[str, list[Obj]], version: str) -> None:
    for obj in built["classic"]:
        validate(obj, version)


@pytest.mark.parametrize("wiring", ["native", "classic"])
def test_every_wired_container_calls_the_hub_then_the_real_api(
    built: dict[str, list[Obj]], wiring: str
) -> None:
    objects = built[wiring]
    containers = wired(objects)
    # Both wirings: the gate and the sidecar (native or classic) call the hub.
    assert sorted(c["name"] for c in containers) == sorted(WIRED)
    service = named(objects, "Service", HUB)
    (port,) = service["spec"]["ports"]
    for c in containers:
        env = container_env(objects, c)
        # The Service's short name: the hub runs in the workload's namespace.
        assert env["LAYERS_API_URL"] == f"http://{HUB}:{port['port']}", c["name"]
        assert env["LAYERS_FALLBACK_API_URL"] == REAL_API, c["name"]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(hub(objects)))
    assert not selects({"matchLabels": service["spec"]["selector"]}, pod_labels(app(objects)))
    listen = load_command("hub", {}, container_env(objects, hub_container(objects))).listen
    assert resolve_port(hub_container(objects), port["targetPort"]) == listen.port


@pytest.mark.parametrize("wiring", ["native-direct", "classic-direct"])
def test_without_the_component_nothing_calls_a_hub(
    built: dict[str, list[Obj]], wiring: str
) -> None:
    objects = built[wiring]
    assert not [o for o in objects if o["metadata"]["name"] == HUB]
    for c in wired(objects):
        env = container_env(objects, c)
        assert env["LAYERS_API_URL"] == REAL_API
        assert "LAYERS_FALLBACK_API_URL" not in env


def test_the_hub_runs_the_hub_command(built: dict[str, list[Obj]]) -> None:
    objects = built["native"]
    c = hub_container(objects)
    assert c["args"] == ["hub"]
    assert "command" not in c
    assert c["image"] == IMAGE
    env = container_env(objects, c)
    # One ConfigMap feeds the hub and the wired containers: the hub's own variables, read
    # before the shared ones, which mean the sidecars' settings (LAYERS_API_URL is the hub).
    settings = load_command("hub", {}, env)
    assert settings.api_url == REAL_API
    assert env["LAYERS_HUB_API_URL"] == REAL_API
    for sidecar in wired(objects):
        shared = container_env(objects, sidecar)
        assert {k: v for k, v in env.items() if k in shared} == {
            k: v for k, v in shared.items() if k in env
        }
    for variable, default in (
        ("LAYERS_HUB_TTL", "5s"),
        ("LAYERS_HUB_MAX_KEYS", "10000"),
        ("LAYERS_HUB_MAX_UPSTREAM_RATE", "20"),
    ):
        assert env[variable] == default
    # The hub gives up on Layers before a sidecar gives up on the hub (and calls the fallback);
    # the sidecars leave LAYERS_SIDECAR_TIMEOUT at the program's 10s.
    assert settings.timeout == 5
    for sidecar in wired(objects):
        sidecar_env = container_env(objects, sidecar)
        assert load({}, sidecar_env, names=frozenset({"timeout"})).timeout == 10
    assert not {"LAYERS_API_KEY", "LAYERS_API_KEY_FILE"} & set(env), "the hub holds no key"
    listen = settings.listen.port
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"]["path"] == path
        assert resolve_port(c, c[probe]["httpGet"]["port"]) == listen


def test_the_hub_is_locked_down_spread_and_protected(built: dict[str, list[Obj]]) -> None:
    objects = built["native"]
    deployment = hub(objects)
    spec = pod_spec(deployment)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsUser"] == IMAGE_UID
    context = hub_container(objects)["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = pod_labels(deployment)
    # The hub is not itself a wired pod: the sidecar components leave it alone.
    assert "layers-readiness/wired" not in labels
    assert "layers-readiness/inject" not in deployment["metadata"]["labels"]
    (node,) = [
        c for c in spec["topologySpreadConstraints"] if c["topologyKey"] == "kubernetes.io/hostname"
    ]
    assert node["whenUnsatisfiable"] == "DoNotSchedule"
    assert selects(node["labelSelector"], labels)
    pdb = named(objects, "PodDisruptionBudget", HUB)
    assert selects(pdb["spec"]["selector"], labels)
    assert 0 < pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]
    assert not selects(app(objects)["spec"]["selector"], labels)


def test_network_policy_admits_wired_pods_and_prometheus_only(
    built: dict[str, list[Obj]],
) -> None:
    objects = built["native"]
    policy = named(objects, "NetworkPolicy", HUB)
    assert selects(policy["spec"]["podSelector"], pod_labels(hub(objects)))
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == ["hub-http"]
    wired_pod = pod_labels(app(objects))
    assert admits(policy, labels=wired_pod, namespace_labels={}, same=True)
    prometheus = {"app.kubernetes.io/name": "prometheus"}
    assert admits(policy, labels=prometheus, namespace_labels={}, same=False)
    unwired = {k: v for k, v in wired_pod.items() if not k.startswith("layers-readiness/")}
    assert not admits(policy, labels=unwired, namespace_labels={}, same=True)
    assert not admits(policy, labels=wired_pod, namespace_labels={}, same=False)


def test_the_hub_podmonitor_scrapes_the_hub_only(built: dict[str, list[Obj]]) -> None:
    monitors = {o["metadata"]["name"]: o for o in built["prometheus"] if o["kind"] == "PodMonitor"}
    objects = built["native"]
    hub_pods, app_pods = pod_labels(hub(objects)), pod_labels(app(objects))
    own = monitors[HUB]
    assert selects(own["spec"]["selector"], hub_pods)
    assert not selects(own["spec"]["selector"], app_pods)
    assert not selects(monitors["layers-readiness"]["spec"]["selector"], hub_pods)
    (endpoint,) = own["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert resolve_port(hub_container(objects), endpoint["port"]) == 8080


def test_the_plain_scrape_config_finds_the_hub(built: dict[str, list[Obj]]) -> None:
    config = yaml.safe_load((DEPLOY_DIR / "prometheus" / "scrape-config.yaml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == HUB]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["kubernetes_sd_configs"]
    (selector,) = sd["selectors"]
    key, _, value = selector["label"].partition("=")
    objects = built["native"]
    assert pod_labels(hub(objects)).get(key) == value
    assert pod_labels(app(objects)).get(key) != value
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep[0]["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    assert [p["name"] for p in hub_container(objects)["ports"]] == [keep[0]["regex"]]
