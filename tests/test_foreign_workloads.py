"""Workloads nobody here wrote (tests/workloads/: podinfo, nginx-unprivileged on 8080, the
Kubernetes documentation's StatefulSet, DaemonSet, Job and CronJob), wired through every
documented path (tests/wiring.py: the kustomize components, the chart's templates, `inject` and
the webhook, each in both modes) and judged by the kubelet's rules (tests/kubelet.py): the key
readable, no port taken, nothing of theirs changed, no restart on a hard stop at boot, Jobs that
end. Each wiring is also valid for every Kubernetes version the other manifest tests use, and
follows the canonical names and numbers. `inject` is idempotent on them, and the webhook adds to
each Pod exactly what `inject` adds to its template, and nothing on re-invocation.

The last tests put each defect of the first rollout back into a sound wiring and watch the judge
report it: the harness bites."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import admission, kubelet, wiring
from tests.k8s import K8S_VERSIONS, env_value, kustomize, validate

Obj = dict[str, Any]

CASES = [(w.stem, path) for w in wiring.workloads() for path in wiring.PATHS]
KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
PORT = 9476


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Obj]:
    built = {}
    for workload in wiring.workloads():
        for path in wiring.PATHS:
            tmp = tmp_path_factory.mktemp(f"{workload.stem}-{path.replace(':', '-')}")
            built[workload.stem, path] = wiring.wired(
                wiring.ROOT, path, workload, tmp, app_probe=False
            )
    return built


def original(name: str) -> Obj:
    return wiring.load(wiring.WORKLOADS / f"{name}.yaml")


def path_of(name: str) -> Path:
    return wiring.WORKLOADS / f"{name}.yaml"


def judge(after: Obj, workload: str, path: str) -> list[kubelet.Finding]:
    return wiring.judge(path, path_of(workload), after)


def test_the_workloads_cover_every_kind_and_the_hard_cases() -> None:
    docs = [wiring.load(w) for w in wiring.workloads()]
    assert {d["kind"] for d in docs} == KINDS
    specs = [kubelet.template(d)["spec"] for d in docs]  # type: ignore[index]
    contexts = [s.get("securityContext") or {} for s in specs]
    assert any("fsGroup" not in c for c in contexts)
    assert any(c.get("fsGroup") not in (None, 65532) for c in contexts)  # a foreign fsGroup
    assert any(c.get("runAsUser") not in (None, 65532) for c in contexts)
    ports = {p["containerPort"] for s in specs for c in s["containers"] for p in c.get("ports", [])}
    assert 8080 in ports
    containers = [c for s in specs for c in s["containers"]]
    assert any((c.get("securityContext") or {}).get("readOnlyRootFilesystem") for c in containers)
    assert sum("readinessProbe" in c or "livenessProbe" in c for c in containers) >= 3


@pytest.mark.parametrize(("workload", "path"), CASES)
def test_the_kubelet_finds_nothing_wrong(
    wired: dict[tuple[str, str], Obj], workload: str, path: str
) -> None:
    assert judge(wired[workload, path], workload, path) == []


@pytest.mark.parametrize(("workload", "path"), CASES)
def test_every_wiring_is_valid(wired: dict[tuple[str, str], Obj], workload: str, path: str) -> None:
    for version in K8S_VERSIONS:
        validate(wired[workload, path], version)


INJECT_CASES = [(w.stem, mode) for w in wiring.workloads() for mode in wiring.MODES]


@pytest.mark.parametrize(("workload", "mode"), INJECT_CASES)
def test_inject_is_idempotent(workload: str, mode: str) -> None:
    once = wiring.inject_text(mode, path_of(workload))
    assert wiring.inject_text(mode, stdin=once) == once


def added(pod: Obj) -> dict[str, Any]:
    """What a wiring added to a pod: our containers and volume, by list, and the label."""
    spec = pod["spec"]
    lists = {
        key: [i for i in spec.get(key) or [] if i["name"].startswith("layers-readiness-")]
        for key in ("initContainers", "containers", "volumes")
    }
    return {**lists, "label": pod["metadata"]["labels"].get("layers-readiness/wired")}


@pytest.mark.parametrize(("workload", "mode"), INJECT_CASES)
def test_the_webhook_makes_of_the_pod_what_inject_makes_of_its_template(
    wired: dict[tuple[str, str], Obj], workload: str, mode: str
) -> None:
    pod = wired[workload, f"webhook:{mode}"]
    template = kubelet.template(wired[workload, f"inject:{mode}"])
    assert template is not None
    assert added(pod) == added(template)
    assert added(pod)["label"] == "true"
    # Everything else of the Pod is as the API server handed it (the opt-in annotation too).
    before = wiring.pod_of(path_of(workload))
    rest = copy.deepcopy(pod)
    for key in ("initContainers", "containers", "volumes"):
        rest["spec"][key] = [
            i for i in rest["spec"].get(key) or [] if not i["name"].startswith("layers-readiness-")
        ]
        if not rest["spec"][key] and key not in before["spec"]:
            del rest["spec"][key]
    del rest["metadata"]["labels"]["layers-readiness/wired"]
    assert rest == before


@pytest.mark.parametrize(("workload", "mode"), INJECT_CASES)
def test_the_webhook_patches_its_own_pod_no_more(
    wired: dict[tuple[str, str], Obj], workload: str, mode: str
) -> None:
    """Re-invocation (reinvocationPolicy: IfNeeded) and a pod `inject` already wired: no patch."""
    assert wiring.webhook_patch(mode, wired[workload, f"webhook:{mode}"]) is None
    injected = copy.deepcopy(wired[workload, f"inject:{mode}"])
    template = kubelet.template(injected)
    assert template is not None
    template.setdefault("metadata", {}).setdefault("annotations", {})["layers-readiness/inject"] = (
        "true"
    )
    pod, _ = admission.pod_from(injected)
    assert wiring.webhook_patch(mode, admission.as_stored(pod)) is None


def ours(pod: Obj) -> list[Obj]:
    spec = pod["spec"]
    return [
        c
        for c in spec.get("initContainers", []) + spec["containers"]
        if c["name"].startswith("layers-readiness-")
    ]


@pytest.mark.parametrize(("workload", "path"), CASES)
def test_every_wiring_is_the_canonical_one(
    wired: dict[tuple[str, str], Obj], workload: str, path: str
) -> None:
    after = wired[workload, path]
    pod = kubelet.template(after)
    assert pod is not None
    spec = pod["spec"]
    assert pod["metadata"]["labels"]["layers-readiness/wired"] == "true"
    gate = spec["initContainers"][0]
    assert (gate["name"], gate["args"]) == ("layers-readiness-check", ["check", "--wait"])
    (volume,) = [v for v in spec["volumes"] if v["name"] == "layers-readiness-api-key"]
    assert volume["secret"] == {"secretName": "layers-api-key", "defaultMode": 0o444}
    job = original(workload)["kind"] in kubelet.JOB_KINDS
    native = wiring.mode_of(path) == "native"
    names = [c["name"] for c in ours(pod)]
    if native:
        assert spec["initContainers"][1]["name"] == "layers-readiness-serve"
        assert spec["initContainers"][1]["restartPolicy"] == "Always"
    assert names == (
        ["layers-readiness-check"]
        if job and not native
        else ["layers-readiness-check", "layers-readiness-serve"]
    )
    for c in ours(pod):
        assert env_value(c, "LAYERS_API_KEY_FILE") == "/etc/layers-readiness/api-key"
        assert c["volumeMounts"][0] == {
            "name": "layers-readiness-api-key",
            "mountPath": "/etc/layers-readiness",
            "readOnly": True,
        }
        assert c["securityContext"]["runAsUser"] == 65532
        assert c["resources"]["limits"] == {"memory": "128Mi"}
        if c["name"] != "layers-readiness-serve":
            continue
        assert env_value(c, "LAYERS_SIDECAR_LISTEN") == f"0.0.0.0:{PORT}"
        assert c["ports"] == [{"name": "layers-http", "containerPort": PORT, "protocol": "TCP"}]
        timings = {
            probe: (
                c[probe]["httpGet"]["path"],
                c[probe]["periodSeconds"],
                c[probe]["timeoutSeconds"],
                c[probe]["failureThreshold"],
            )
            for probe in ("startupProbe", "readinessProbe", "livenessProbe")
        }
        assert timings == {
            "startupProbe": ("/livez", 1, 2, 30),
            "readinessProbe": ("/readyz", 2, 2, 2),
            "livenessProbe": ("/livez", 10, 2, 3),
        }


def test_one_chart_value_moves_the_port(tmp_path: Path) -> None:
    import helm_python

    workload = wiring.WORKLOADS / "nginx-unprivileged.yaml"
    wiring.helm_wired(wiring.ROOT, "native", workload, tmp_path, app_probe=False)
    chart = tmp_path / "parent"
    with helm_python.Chart.load(chart) as loaded:
        rendered = loaded.render({"layers-readiness": {"port": 10001}}, name="r", namespace="a")
    text = next(t for p, t in rendered.items() if p.endswith("workload.yaml"))
    assert "9476" not in text
    (after,) = [d for d in yaml.safe_load_all(text) if d]
    serve = kubelet.template(after)["spec"]["initContainers"][1]  # type: ignore[index]
    assert env_value(serve, "LAYERS_SIDECAR_LISTEN") == "0.0.0.0:10001"
    assert serve["ports"][0]["containerPort"] == 10001
    assert kubelet.judge("Deployment", wiring.load(workload), after) == []


# --- each defect of the first rollout, put back: the judge reports it ----------------------------


def broken(wired: dict[tuple[str, str], Obj], workload: str, path: str) -> tuple[Obj, Obj]:
    after = copy.deepcopy(wired[workload, path])
    pod = kubelet.template(after)
    assert pod is not None
    return after, pod["spec"]


def rules(after: Obj, workload: str, path: str) -> set[str]:
    return {f.rule for f in judge(after, workload, path)}


@pytest.mark.parametrize("path", wiring.PATHS)
def test_a_0440_key_without_fsgroup_is_unreadable(
    wired: dict[tuple[str, str], Obj], path: str
) -> None:
    after, spec = broken(wired, "job", path)
    for volume in spec["volumes"]:
        if volume["name"] == "layers-readiness-api-key":
            volume["secret"]["defaultMode"] = 0o440
    assert rules(after, "job", path) == {"key-unreadable"}
    # The same mode is readable in the workload with a foreign fsGroup.
    after, spec = broken(wired, "nginx-unprivileged", path)
    for volume in spec["volumes"]:
        if volume["name"] == "layers-readiness-api-key":
            volume["secret"]["defaultMode"] = 0o440
    assert rules(after, "nginx-unprivileged", path) == set()


@pytest.mark.parametrize("path", wiring.PATHS)
def test_the_sidecar_on_8080_collides_with_nginx(
    wired: dict[tuple[str, str], Obj], path: str
) -> None:
    after, spec = broken(wired, "nginx-unprivileged", path)
    (serve,) = [
        c
        for c in spec["initContainers"] + spec["containers"]
        if c["name"] == "layers-readiness-serve"
    ]
    serve["ports"][0]["containerPort"] = 8080
    assert rules(after, "nginx-unprivileged", path) == {"port-collision"}


def test_a_replaced_application_probe_is_a_change(wired: dict[tuple[str, str], Obj]) -> None:
    after, spec = broken(wired, "podinfo", "kustomize:native-sidecar")
    spec["containers"][0]["readinessProbe"] = {"httpGet": {"path": "/readyz", "port": PORT}}
    assert rules(after, "podinfo", "kustomize:native-sidecar") == {"workload-changed"}


@pytest.mark.parametrize("path", wiring.PATHS)
def test_a_gate_that_exits_or_a_readyz_startup_probe_restarts(
    wired: dict[tuple[str, str], Obj], path: str
) -> None:
    after, spec = broken(wired, "statefulset", path)
    spec["initContainers"][0]["args"] = ["check"]
    assert rules(after, "statefulset", path) == {"restart-on-hard-stop"}
    if wiring.mode_of(path) == "native":
        after, spec = broken(wired, "statefulset", path)
        spec["initContainers"][1]["startupProbe"]["httpGet"]["path"] = "/readyz"
        (finding,) = judge(after, "statefulset", path)
        assert finding.detail.endswith("after 30s")


@pytest.mark.parametrize("workload", ["job", "cronjob"])
def test_a_classic_sidecar_in_a_job_never_ends(
    wired: dict[tuple[str, str], Obj], workload: str
) -> None:
    after, spec = broken(wired, workload, "helm:native")
    serve = spec["initContainers"].pop(1)
    del serve["restartPolicy"]
    spec["containers"].append(serve)
    assert rules(after, workload, "helm:native") == {"job-never-ends"}


def test_the_documented_kustomize_patch_moves_the_port(tmp_path: Path) -> None:
    """docs/deploy.md's patch, as written there, for a workload that already uses 9476."""
    docs = (wiring.ROOT / "docs" / "deploy.md").read_text()
    start = docs.index("**Moving the port.**")
    block = docs[docs.index("```yaml\n", start) + len("```yaml\n") : docs.index("```\n", start + 1)]
    patches = yaml.safe_load(block)["patches"]
    patches[0]["target"]["name"] = "podinfo"
    workload = wiring.load(wiring.WORKLOADS / "podinfo.yaml")
    app = kubelet.template(workload)["spec"]["containers"][0]  # type: ignore[index]
    app["ports"].append({"name": "other", "containerPort": PORT, "protocol": "TCP"})
    (tmp_path / "podinfo.yaml").write_text(yaml.safe_dump(workload))
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": ["podinfo.yaml"],
                "components": [
                    os.path.relpath(
                        wiring.ROOT / "deploy" / "components" / "native-sidecar", tmp_path
                    )
                ],
                "patches": patches,
            }
        )
    )
    (after,) = [d for d in kustomize(tmp_path) if d["kind"] == "Deployment"]
    serve = kubelet.template(after)["spec"]["initContainers"][1]  # type: ignore[index]
    assert env_value(serve, "LAYERS_SIDECAR_LISTEN") == "0.0.0.0:9477"
    assert serve["ports"][0]["containerPort"] == 9477
    assert kubelet.judge("Deployment", workload, after) == []
