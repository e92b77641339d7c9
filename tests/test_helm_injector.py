"""The chart's injector (injector.enabled): its objects against the Kubernetes schemas
(admissionregistration.k8s.io/v1 included), the webhook's configuration, and its TLS chain: the
caBundle verifies the certificate the injector serves, for each of the Service's DNS names."""

from __future__ import annotations

import base64
import signal
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.testing import clean_env, command, free_port, wait_for
from tests.k8s import K8S_VERSIONS, render_chart, validate

Obj = dict[str, Any]
ENABLED = {"injector": {"enabled": True}}


def objects(values: Obj) -> list[Obj]:
    return [
        o for objs in render_chart(values, name="demo", namespace="apps").values() for o in objs
    ]


def one(found: list[Obj], kind: str, *, part: str = "injector") -> Obj:
    (obj,) = [o for o in found if o["kind"] == kind and part in o["metadata"]["name"]]
    return obj


def test_nothing_of_the_injector_without_enabled() -> None:
    names = [o["metadata"]["name"] for o in objects({})]
    assert not [n for n in names if "injector" in n]


@pytest.mark.parametrize(
    "values", [ENABLED, {"injector": {"enabled": True, "certManager": {"enabled": True}}}]
)
def test_every_builtin_object_is_valid(values: Obj) -> None:
    for obj in objects(values):
        if obj["apiVersion"].startswith("cert-manager.io/"):
            continue  # no schema for cert-manager's kinds here; shaped by the test below
        for version in K8S_VERSIONS:
            validate(obj, version)


def test_the_webhook_configuration() -> None:
    found = objects(
        {
            "injector": {
                "enabled": True,
                "timeoutSeconds": 3,
                "namespaceSelector": {
                    "matchLabels": {"layers-readiness/injection": "enabled"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}],
                },
            }
        }
    )
    config = one(found, "MutatingWebhookConfiguration")
    assert "namespace" not in config["metadata"]  # cluster-scoped
    (webhook,) = config["webhooks"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["reinvocationPolicy"] == "IfNeeded"
    assert webhook["timeoutSeconds"] == 3
    assert webhook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    service = one(found, "Service")
    assert webhook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": "apps",
        "path": "/mutate",
        "port": service["spec"]["ports"][0]["port"],
    }
    assert webhook["namespaceSelector"] == {
        "matchLabels": {"layers-readiness/injection": "enabled"},
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["kube-system", "apps"],
            },
            {"key": "tier", "operator": "In", "values": ["web"]},
        ],
    }


def test_the_deployment_is_hardened_spread_and_probed_like_the_hub() -> None:
    found = objects({"injector": {"enabled": True}, "hub": {"enabled": True}})
    injector = one(found, "Deployment")
    hub = one(found, "Deployment", part="hub")
    spec, hub_spec = injector["spec"]["template"]["spec"], hub["spec"]["template"]["spec"]
    assert injector["spec"]["replicas"] == 2
    assert injector["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["securityContext"] == hub_spec["securityContext"]
    (container,) = spec["containers"]
    assert container["securityContext"] == hub_spec["containers"][0]["securityContext"]
    assert spec["automountServiceAccountToken"] is False
    assert [c["topologyKey"] for c in spec["topologySpreadConstraints"]] == [
        "kubernetes.io/hostname",
        "topology.kubernetes.io/zone",
    ]
    selector = injector["spec"]["selector"]["matchLabels"]
    assert all(
        c["labelSelector"]["matchLabels"] == selector for c in spec["topologySpreadConstraints"]
    )
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
        assert container[probe]["httpGet"]["port"] == "webhook"
    pdb = one(found, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    # With a hub, the containers it injects call the hub and fall back to Layers.
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LAYERS_API_URL"].startswith("https://demo-layers-readiness-hub.apps.svc:")
    assert env["LAYERS_FALLBACK_API_URL"] == "https://api.layers.com"
    assert "--image=localhost/layers-readiness:0.1.0" in container["args"]


def test_cert_manager_makes_the_certificate_and_injects_the_ca() -> None:
    found = objects({"injector": {"enabled": True, "certManager": {"enabled": True}}})
    assert not [o for o in found if o["kind"] == "Secret" and "injector" in o["metadata"]["name"]]
    config = one(found, "MutatingWebhookConfiguration")
    certificate = one(found, "Certificate")
    issuer = one(found, "Issuer")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"apps/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert certificate["spec"]["issuerRef"] == {
        "kind": "Issuer",
        "name": issuer["metadata"]["name"],
    }
    assert issuer["spec"] == {"selfSigned": {}}
    deployment = one(found, "Deployment")
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    service = one(found, "Service")["metadata"]["name"]
    assert f"{service}.apps.svc" in certificate["spec"]["dnsNames"]


def test_the_ca_bundle_verifies_the_served_certificate_for_the_services_names(
    tmp_path: Path,
) -> None:
    found = objects(ENABLED)
    secret = one(found, "Secret")
    config = one(found, "MutatingWebhookConfiguration")
    deployment = one(found, "Deployment")
    service = one(found, "Service")["metadata"]["name"]
    (volume,) = deployment["spec"]["template"]["spec"]["volumes"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert secret["type"] == "kubernetes.io/tls"
    ca_bundle = base64.b64decode(config["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    assert ca_bundle == base64.b64decode(secret["data"]["ca.crt"]).decode()
    for key in ("tls.crt", "tls.key"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))

    # The real injector, with the chart's arguments (but on loopback), serving that Secret.
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    port = free_port()
    args = [
        a.replace("/etc/layers-readiness-injector-tls", str(tmp_path))
        for a in container["args"]
        if not a.startswith("--listen=")
    ]
    env = clean_env(**{e["name"]: e["value"] for e in container["env"]})
    process = subprocess.Popen(
        command(*args, f"--listen=127.0.0.1:{port}"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        trust = ssl.create_default_context(cadata=ca_bundle)

        def handshake(name: str) -> str:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                trust.wrap_socket(raw, server_hostname=name) as tls,
            ):
                tls.sendall(
                    f"GET /readyz HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
                )
                return tls.recv(100).decode()

        wait_for(
            lambda: process.poll() is None and handshake(f"{service}.apps.svc"),
            timeout=15,
            what="the injector to serve the chart's certificate",
        )
        for name in (
            service,
            f"{service}.apps",
            f"{service}.apps.svc",
            f"{service}.apps.svc.cluster.local",
        ):
            assert handshake(name).startswith("HTTP/1.1 200"), name
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake("kubernetes.default.svc")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def test_alerts_and_podmonitor_come_with_the_injector() -> None:
    values = {
        "injector": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    }
    found = objects(values)
    monitor = one(found, "PodMonitor")
    deployment = one(found, "Deployment")
    assert (
        monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    )
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == (
        "webhook",
        "https",
        "/metrics",
    )
    (rule,) = [o for o in found if o["kind"] == "PrometheusRule"]
    (group,) = [g for g in rule["spec"]["groups"] if g["name"] == "layers-readiness-injector"]
    job = f"apps/{monitor['metadata']['name']}"
    for alert in group["rules"]:
        assert f'job="{job}"' in alert["expr"], alert["alert"]
    for obj in found:
        for version in K8S_VERSIONS:
            validate(obj, version)
