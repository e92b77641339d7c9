"""`deploy/`: every kustomization builds with `kubectl kustomize`, every object it builds is valid
for Kubernetes 1.29 and the newest version kubernetes-validate knows (strict: unknown fields
fail), and the wiring is what the docs promise: both wirings, a Secret mounted as a file,
locked-down security contexts, a PodMonitor and a plain scrape config that find the sidecar.

CRDs (PodMonitor, PrometheusRule) are validated by tests/k8s.py against strict subsets of the
Prometheus Operator's CRD schemas; see that module.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s import (
    DEPLOY_DIR,
    IMAGE_UID,
    K8S_VERSIONS,
    ROOT,
    Obj,
    all_containers,
    container,
    env_value,
    kustomizations,
    kustomize,
    pod_spec,
    resolve_port,
    secret_file,
    secret_value,
    validate,
    workloads,
)
from tests.tools import tool

IMAGE = "localhost/layers-readiness:0.1.0"
KEY_FILE = "/etc/layers-readiness/api-key"
PORT_NAME = "layers-http"
SIDECAR_LABEL = ("layers-readiness/wired", "true")

DIRECTORIES = kustomizations()


def test_the_expected_kustomizations_exist() -> None:
    names = {str(d.relative_to(DEPLOY_DIR)) for d in DIRECTORIES}
    assert {
        ".",
        "app",
        "demo-key",
        "examples/classic",
        "examples/native-sidecar",
        "prometheus",
    } <= names
    # The readiness-probe component (it replaced the application's own probe) is gone.
    assert not (DEPLOY_DIR / "components" / "readiness-probe").exists()
    for component in ("classic", "native-sidecar"):
        document = yaml.safe_load(
            (DEPLOY_DIR / "components" / component / "kustomization.yaml").read_text()
        )
        assert document["kind"] == "Component"


@pytest.fixture(scope="module")
def built() -> dict[str, list[Obj]]:
    """Every kustomization, built once per module."""
    return {str(d.relative_to(DEPLOY_DIR)): kustomize(d) for d in DIRECTORIES}


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", [str(d.relative_to(DEPLOY_DIR)) for d in DIRECTORIES])
def test_every_built_object_is_valid(
    built: dict[str, list[Obj]], directory: str, version: str
) -> None:
    objects = built[directory]
    assert objects, f"{directory} builds nothing"
    for obj in objects:
        validate(obj, version)


def test_top_level_build_holds_the_example_and_its_monitoring(built: dict[str, list[Obj]]) -> None:
    kinds = sorted(o["kind"] for o in built["."])
    assert {"Deployment", "Service", "PodMonitor"} <= set(kinds)
    assert "Secret" not in kinds, "applying it must never replace the user's key"
    if (DEPLOY_DIR / "monitoring" / "kustomization.yaml").exists():
        assert "PrometheusRule" in kinds
        dashboards = [
            o
            for o in built["."]
            if o["kind"] == "ConfigMap"
            and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
        ]
        assert dashboards


def deployment(objects: list[Obj]) -> Obj:
    (found,) = [o for o in objects if o["kind"] == "Deployment"]
    return found


def listen_port(c: Obj) -> int:
    listen = env_value(c, "LAYERS_SIDECAR_LISTEN")
    assert listen is not None, f"{c['name']}: LAYERS_SIDECAR_LISTEN is not set"
    return int(listen.rsplit(":", 1)[1])


def test_classic_example_has_a_check_init_container_and_a_serve_sidecar(
    built: dict[str, list[Obj]],
) -> None:
    spec = pod_spec(deployment(built["examples/classic"]))
    init = container(spec, "layers-readiness-check")
    assert spec["initContainers"] == [init]
    assert "restartPolicy" not in init, "a classic init container runs to completion"
    assert init["args"] == ["check", "--wait"]
    assert "command" not in init
    assert init["image"] == IMAGE
    sidecar = container(spec, "layers-readiness-serve")
    assert sidecar["args"] == ["serve"]
    # Appended after the application's containers.
    assert [c["name"] for c in spec["containers"]] == ["app", "layers-readiness-serve"]
    assert listen_port(sidecar) == 9476
    port = listen_port(sidecar)
    assert resolve_port(sidecar, sidecar["readinessProbe"]["httpGet"]["port"]) == port
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert resolve_port(sidecar, sidecar["livenessProbe"]["httpGet"]["port"]) == port
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_native_example_has_one_native_sidecar_gating_start_up(
    built: dict[str, list[Obj]],
) -> None:
    spec = pod_spec(deployment(built["examples/native-sidecar"]))
    gate, sidecar = spec["initContainers"]
    assert (gate["name"], gate["args"]) == ("layers-readiness-check", ["check", "--wait"])
    assert sidecar["name"] == "layers-readiness-serve"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["args"] == ["serve"]
    port = listen_port(sidecar)
    assert port == 9476
    startup = sidecar["startupProbe"]
    # Never /readyz: a kill switch at boot must not make the kubelet restart the sidecar (the
    # gate already held the pod until the key was healthy).
    assert startup["httpGet"]["path"] == "/livez"
    assert resolve_port(sidecar, startup["httpGet"]["port"]) == port
    assert sidecar["livenessProbe"]["httpGet"]["path"] == "/livez"
    readiness = sidecar["readinessProbe"]
    assert readiness["httpGet"]["path"] == "/readyz"
    # One slow answer is ridden out; a kill switch drops the pod within a few seconds.
    assert readiness["failureThreshold"] == 2
    assert readiness["periodSeconds"] * readiness["failureThreshold"] <= 5
    assert [c["name"] for c in spec["containers"]] == ["app"]


@pytest.mark.parametrize("example", ["examples/classic", "examples/native-sidecar", "."])
def test_the_application_keeps_its_own_probes(built: dict[str, list[Obj]], example: str) -> None:
    spec = pod_spec(deployment(built[example]))
    (app,) = [c for c in spec["containers"] if c["name"] == "app"]
    source = yaml.safe_load((DEPLOY_DIR / "app" / "deployment.yaml").read_text())
    assert app == pod_spec(source)["containers"][0]
    assert "readinessProbe" not in app


def our_containers(spec: Obj) -> list[Obj]:
    return [c for _, c in all_containers(spec) if c["name"].startswith("layers-readiness")]


@pytest.mark.parametrize("example", ["examples/classic", "examples/native-sidecar"])
def test_security_contexts_are_locked_down(built: dict[str, list[Obj]], example: str) -> None:
    workload = deployment(built[example])
    spec = pod_spec(workload)
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == IMAGE_UID
    assert pod["fsGroup"] == IMAGE_UID
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    for _, c in all_containers(spec):
        context = c["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, c["name"]
        assert context["readOnlyRootFilesystem"] is True, c["name"]
        assert context["capabilities"] == {"drop": ["ALL"]}, c["name"]
        assert "privileged" not in context
    for c in our_containers(spec):
        context = c["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == IMAGE_UID == context["runAsGroup"]
        assert c["resources"]["limits"]["memory"]
        assert c["resources"]["requests"]["cpu"]


@pytest.mark.parametrize("example", ["examples/classic", "examples/native-sidecar"])
def test_key_comes_from_a_secret_mounted_as_a_directory(
    built: dict[str, list[Obj]], example: str
) -> None:
    objects = built[example]
    spec = pod_spec(deployment(objects))
    for c in our_containers(spec):
        assert env_value(c, "LAYERS_API_KEY") is None, "the key itself never goes in env"
        assert env_value(c, "LAYERS_API_KEY_FILE") == KEY_FILE
        found = secret_file(objects, spec, c, KEY_FILE)
        assert found is not None, f"{c['name']}: nothing mounted at {KEY_FILE}"
        secret, key = found
        assert all(m.get("readOnly") for m in c["volumeMounts"])
        # the user's own Secret: the example carries none that could replace it
        assert secret["metadata"]["name"] == "layers-api-key"
        assert key == "api-key"
    assert not [o for o in objects if o["kind"] == "Secret"]


def test_demo_key_is_apart_and_obviously_fake(built: dict[str, list[Obj]]) -> None:
    (secret,) = built["demo-key"]
    assert secret["kind"] == "Secret"
    # A stable name: the kubelet updates the mounted file in place when the Secret changes.
    assert secret["metadata"]["name"] == "layers-api-key"
    value = secret_value(secret, "api-key")
    assert value.startswith("lp_test_")
    assert "FAKE" in value
    for directory, objects in built.items():
        if directory != "demo-key":
            assert not [o for o in objects if o["kind"] == "Secret"], directory


def test_podmonitor_finds_the_sidecar(built: dict[str, list[Obj]]) -> None:
    objects = built["."]
    (monitor,) = [
        o
        for o in objects
        if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "layers-readiness"
    ]
    spec = pod_spec(deployment(objects))
    pod_labels = deployment(objects)["spec"]["template"]["metadata"]["labels"]
    for key, value in monitor["spec"]["selector"]["matchLabels"].items():
        assert pod_labels.get(key) == value
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    names = {p["name"] for c in our_containers(spec) for p in c.get("ports", [])}
    assert endpoint["port"] in names


@pytest.mark.parametrize("example", ["examples/classic", "examples/native-sidecar"])
def test_components_label_pods_for_scraping(built: dict[str, list[Obj]], example: str) -> None:
    labels = deployment(built[example])["spec"]["template"]["metadata"]["labels"]
    assert labels[SIDECAR_LABEL[0]] == SIDECAR_LABEL[1]
    spec = pod_spec(deployment(built[example]))
    ports = [p for c in our_containers(spec) for p in c.get("ports", [])]
    assert [p["name"] for p in ports] == [PORT_NAME]


SCRAPE_CONFIG = DEPLOY_DIR / "prometheus" / "scrape-config.yaml"


def test_plain_scrape_config_keeps_the_sidecar_port() -> None:
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "layers-readiness"]
    assert job["metrics_path"] == "/metrics"
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["selectors"] == [{"role": "pod", "label": "=".join(SIDECAR_LABEL)}]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    assert keep[0]["source_labels"] == ["__meta_kubernetes_pod_container_port_name"]
    assert re.fullmatch(keep[0]["regex"], PORT_NAME)


def test_plain_scrape_config_passes_promtool(tmp_path: Path) -> None:
    """promtool checks the job. Debian's Prometheus (what scripts/install-tools installs) is
    built without Kubernetes service discovery, so its promtool refuses `kubernetes_sd_configs`
    as an unknown field; the discovery block is swapped for a static target and everything else
    (intervals, relabelling regexes and actions) is checked as written."""
    promtool = tool("promtool")
    config: dict[str, Any] = yaml.safe_load(SCRAPE_CONFIG.read_text())
    for job in config["scrape_configs"]:
        del job["kubernetes_sd_configs"]
        job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(checked)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


KEY_PATTERN = re.compile(r"lp_[a-z]+_[A-Za-z0-9]+_[A-Za-z0-9]+")


@pytest.mark.parametrize("directory", ["deploy", "helm", "docs"])
def test_committed_keys_are_obviously_fake(directory: str) -> None:
    for path in sorted((ROOT / directory).rglob("*")):
        if not path.is_file() or path.suffix in {".tgz", ".png"}:
            continue
        for key in KEY_PATTERN.findall(path.read_text(errors="replace")):
            assert "FAKE" in key.upper(), f"{path}: {key} does not look fake"


def test_workloads_use_the_image_of_this_repository(built: dict[str, list[Obj]]) -> None:
    for directory, objects in built.items():
        for workload in workloads(objects):
            for c in our_containers(pod_spec(workload)):
                assert c["image"] == IMAGE, directory


def test_podmonitors_keep_pending_pods(built: dict[str, list[Obj]]) -> None:
    """The Operator drops Pending pods only when a PodMonitor sets filterRunning to false; a
    native sidecar holds its pod in Pending at start-up, when its metrics matter most."""
    monitors = [o for objects in built.values() for o in objects if o["kind"] == "PodMonitor"]
    assert monitors
    for monitor in monitors:
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint.get("filterRunning", True) is True, monitor["metadata"]["name"]
