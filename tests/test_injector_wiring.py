"""The pure wiring (sidecar/injector/wiring.py): the wiring contract, kind by kind, mode by mode."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sidecar.commands import load_command
from sidecar.injector import wiring
from sidecar.injector.options import duration_text, wiring_of
from sidecar.injector.wiring import DEFAULT_PORT, Wiring, WiringError, wire
from tests.admission import template_of, workloads
from tests.k8s import K8S_VERSIONS, validate

MODES = ("native", "classic")
KINDS = [w["kind"] for w in workloads()]


def wired_workload(workload: dict[str, Any], options: Wiring) -> dict[str, Any]:
    out = copy.deepcopy(workload)
    template = wire(template_of(workload), options)
    if workload["kind"] == "Pod":
        return template
    holder = out["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else out["spec"]
    holder["template"] = template
    return out


def names(containers: list[dict[str, Any]] | None) -> list[str]:
    return [c["name"] for c in containers or []]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_wired_by_the_contract_and_stays_valid(kind: str, mode: str) -> None:
    workload = next(w for w in workloads() if w["kind"] == kind)
    before = copy.deepcopy(workload)
    result = wired_workload(workload, Wiring(mode=mode))
    assert workload == before, "the input must never change"
    for version in K8S_VERSIONS:
        validate(result, version)

    old, new = template_of(workload)["spec"], template_of(result)["spec"]
    completes = old.get("restartPolicy") in ("Never", "OnFailure")
    ours_init = ["layers-readiness-check"] + (
        ["layers-readiness-serve"] if mode == "native" else []
    )
    assert names(new["initContainers"]) == ours_init + names(old.get("initContainers"))
    ours_main = ["layers-readiness-serve"] if mode == "classic" and not completes else []
    assert names(new["containers"]) == names(old["containers"]) + ours_main
    # Nothing of the workload's own changes.
    assert new["initContainers"][len(ours_init) :] == (old.get("initContainers") or [])
    assert new["containers"][: len(old["containers"])] == old["containers"]
    assert new["volumes"][:-1] == (old.get("volumes") or [])
    assert {
        k: v for k, v in new.items() if k not in ("initContainers", "containers", "volumes")
    } == {k: v for k, v in old.items() if k not in ("initContainers", "containers", "volumes")}
    labels = template_of(result)["metadata"]["labels"]
    assert labels == {
        **template_of(workload)["metadata"]["labels"],
        "layers-readiness/wired": "true",
    }

    assert new["volumes"][-1] == {
        "name": "layers-readiness-api-key",
        "secret": {"secretName": "layers-api-key", "defaultMode": 0o444},
    }
    check = new["initContainers"][0]
    assert check["args"] == ["check", "--wait"]
    assert not {"ports", "startupProbe", "readinessProbe", "livenessProbe"} & set(check)
    for c in [
        *new["initContainers"][: len(ours_init)],
        *new["containers"][len(old["containers"]) :],
    ]:
        assert c["image"] == wiring.DEFAULT_IMAGE
        assert c["imagePullPolicy"] == "IfNotPresent"
        assert c["volumeMounts"] == [
            {
                "name": "layers-readiness-api-key",
                "mountPath": "/etc/layers-readiness",
                "readOnly": True,
            }
        ]
        assert {"name": "LAYERS_API_KEY_FILE", "value": "/etc/layers-readiness/api-key"} in c["env"]
        assert c["securityContext"]["runAsUser"] == 65532
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"] == {
            "requests": {"cpu": "10m", "memory": "48Mi"},
            "limits": {"memory": "128Mi"},
        }


def serve_of(template: dict[str, Any]) -> dict[str, Any]:
    spec = template["spec"]
    return next(
        c
        for c in [*spec["initContainers"], *spec.get("containers", [])]
        if c["name"] == "layers-readiness-serve"
    )


def test_the_port_skips_every_port_the_pod_declares_or_probes() -> None:
    web = template_of(workloads()[0])  # declares 9476, probes 9477 by number
    serve = serve_of(wire(web))
    assert serve["ports"] == [
        {"name": "layers-http", "containerPort": DEFAULT_PORT + 2, "protocol": "TCP"}
    ]
    assert {"name": "LAYERS_SIDECAR_LISTEN", "value": f"0.0.0.0:{DEFAULT_PORT + 2}"} in serve["env"]
    db = template_of(workloads()[1])
    assert serve_of(wire(db))["ports"][0]["containerPort"] == DEFAULT_PORT


def test_serve_probes_and_native_restart_policy() -> None:
    native = serve_of(wire(template_of(workloads()[1])))
    assert native["restartPolicy"] == "Always"
    assert native["args"] == ["serve"]
    assert native["startupProbe"] == {
        "httpGet": {"path": "/livez", "port": "layers-http"},
        "periodSeconds": 1,
        "timeoutSeconds": 2,
        "failureThreshold": 30,
    }
    assert native["readinessProbe"] == {
        "httpGet": {"path": "/readyz", "port": "layers-http"},
        "periodSeconds": 2,
        "timeoutSeconds": 2,
        "failureThreshold": 2,
    }
    assert native["livenessProbe"] == {
        "httpGet": {"path": "/livez", "port": "layers-http"},
        "periodSeconds": 10,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    classic = serve_of(wire(template_of(workloads()[1]), {"mode": "classic"}))
    assert "restartPolicy" not in classic


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", KINDS)
def test_wiring_twice_is_wiring_once(kind: str, mode: str) -> None:
    template = template_of(next(w for w in workloads() if w["kind"] == kind))
    once = wire(template, {"mode": mode})
    assert wire(once, {"mode": mode}) == once
    assert wire(once, {"mode": "classic" if mode == "native" else "native"}) == once


def test_opted_out_templates_are_returned_unchanged() -> None:
    for workload in workloads({"layers-readiness/inject": "false"}):
        template = template_of(workload)
        assert wire(template) == template


def test_annotations_override_the_options_for_one_workload() -> None:
    annotations = {
        "layers-readiness/mode": "classic",
        "layers-readiness/secret": "team-key",
        "layers-readiness/port": "7000",
    }
    template = template_of(workloads(annotations)[1])
    result = wire(template, {"mode": "native", "secret": "other"})
    spec = result["spec"]
    assert names(spec["initContainers"]) == ["layers-readiness-check"]
    assert spec["containers"][-1]["name"] == "layers-readiness-serve"
    assert spec["containers"][-1]["ports"][0]["containerPort"] == 7000
    assert spec["volumes"][-1]["secret"]["secretName"] == "team-key"


@pytest.mark.parametrize(
    ("annotations", "problem"),
    [
        ({"layers-readiness/port": "http"}, "not a port number"),
        ({"layers-readiness/port": "70000"}, "between 1 and 65535"),
        ({"layers-readiness/mode": "sidecar"}, "not one of native, classic"),
    ],
)
def test_unusable_annotations_are_a_wiring_error(annotations: dict[str, str], problem: str) -> None:
    with pytest.raises(WiringError, match=problem):
        wire(template_of(workloads(annotations)[0]))


@pytest.mark.parametrize(
    "template",
    [
        {"spec": None},
        {"metadata": {"annotations": ["x"]}, "spec": {}},
        {"spec": {"containers": {"name": "web"}}},
    ],
)
def test_malformed_templates_are_a_wiring_error(template: dict[str, Any]) -> None:
    with pytest.raises(WiringError):
        wire(template)


def test_settings_are_passed_on_only_when_set() -> None:
    defaults = wiring_of(load_command("inject", {}, {}))
    assert defaults == Wiring()
    assert [e["name"] for e in defaults.env()] == ["LAYERS_API_KEY_FILE", "LAYERS_API_URL"]
    settings = load_command(
        "inject",
        {"interval": "45s", "min_credits": "100", "inject_image": "mirror.example/lr:1"},
        {
            "LAYERS_FALLBACK_API_URL": "https://api.layers.com",
            "LAYERS_API_URL": "http://hub.layers.svc:8080",
            "LAYERS_SIDECAR_STALE_AFTER": "250ms",
            "LAYERS_INJECT_SECRET_KEY": "key",
        },
    )
    options = wiring_of(settings)
    assert options.image == "mirror.example/lr:1"
    assert options.env() == [
        {"name": "LAYERS_API_KEY_FILE", "value": "/etc/layers-readiness/key"},
        {"name": "LAYERS_API_URL", "value": "http://hub.layers.svc:8080"},
        {"name": "LAYERS_FALLBACK_API_URL", "value": "https://api.layers.com"},
        {"name": "LAYERS_SIDECAR_INTERVAL", "value": "45s"},
        {"name": "LAYERS_SIDECAR_STALE_AFTER", "value": "250ms"},
        {"name": "LAYERS_SIDECAR_MIN_CREDITS", "value": "100"},
    ]


def test_the_fallback_interval_reaches_the_serve_container_only() -> None:
    def env_of(wired: dict[str, Any], name: str) -> dict[str, str]:
        spec = wired["spec"]
        (found,) = [c for c in spec["initContainers"] + spec["containers"] if c["name"] == name]
        return {e["name"]: e["value"] for e in found["env"]}

    template = {"spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    assert "LAYERS_FALLBACK_INTERVAL" not in env_of(wire(template), "layers-readiness-serve")
    options = wiring_of(load_command("inject", {"fallback_interval": "1m"}, {}))
    wired = wire(template, options)
    assert env_of(wired, "layers-readiness-serve")["LAYERS_FALLBACK_INTERVAL"] == "60s"
    assert "LAYERS_FALLBACK_INTERVAL" not in env_of(wired, "layers-readiness-check")


@pytest.mark.parametrize(
    ("seconds", "text"), [(30, "30s"), (0.25, "250ms"), (1.5, "1500ms"), (0, "0s")]
)
def test_durations_are_passed_on_as_the_sidecar_reads_them(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
