"""Fleet mode's defaults in the chart: HTTPS with a certificate generated once and kept, or
cert-manager's; the wired containers trusting it; and the detection figures the docs print.

`lookup` answers nothing when rendering offline, so the upgrade path (the Secret found in the
cluster and kept) is rendered from a copy of the chart whose `lookup` call is replaced by the
Secret an earlier rendering produced: the template's own logic, with a fake cluster.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from cryptography import x509

from sidecar.values import parse_duration
from tests.k8s import (
    CHART_DIR,
    Obj,
    all_containers,
    container_env,
    env_value,
    kustomize,
    pod_spec,
    render_chart,
)

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "apps"
HUB = "demo-layers-readiness-hub"
SECRET = f"{HUB}-tls"
WIRED = ("layers-readiness-serve", "layers-readiness-check")
LOOKUP = 'lookup "v1" "Secret" .Release.Namespace $name'


def objects_of(values: dict[str, Any], chart: Path = CHART_DIR) -> list[Obj]:
    with helm_python.Chart.load(chart) as loaded:
        rendered: dict[str, str] = loaded.render(values, name="demo", namespace=NAMESPACE)
    return [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def wired(objects: list[Obj]) -> list[Obj]:
    app = named(objects, "Deployment", "demo-layers-readiness")
    return [c for _, c in all_containers(pod_spec(app)) if c["name"] in WIRED]


def pem(secret: Obj, key: str) -> bytes:
    return base64.b64decode(secret["data"][key])


def subject_hash(ca: bytes) -> str:
    done = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash"],
        input=ca,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return done.stdout.decode().strip()


DEFAULTS = {"hub": {"enabled": True}}


@pytest.fixture(scope="module")
def fleet() -> list[Obj]:
    return objects_of(DEFAULTS)


def test_the_hub_serves_https_by_default_with_a_generated_certificate(
    fleet: list[Obj], tmp_path: Path
) -> None:
    secret = named(fleet, "Secret", SECRET)
    assert secret["type"] == "kubernetes.io/tls"
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    cert = x509.load_pem_x509_certificate(pem(secret, "tls.crt"))
    names = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    dns = {n.value for n in names}
    url = env_value(wired(fleet)[0], "LAYERS_API_URL") or ""
    host = url.removeprefix("https://").rsplit(":", 1)[0]
    assert url.startswith("https://")
    assert host in dns
    assert {HUB, f"{HUB}.{NAMESPACE}", f"{HUB}.{NAMESPACE}.svc"} <= dns
    # The CA the sidecars are given verifies the hub's certificate for that name.
    (tmp_path / "ca.crt").write_bytes(pem(secret, "ca.crt"))
    (tmp_path / "tls.crt").write_bytes(pem(secret, "tls.crt"))
    done = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.crt", "-verify_hostname", host, "tls.crt"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The hub serves that Secret; probes and Prometheus speak HTTPS.
    hub = named(fleet, "Deployment", HUB)
    (hub_c,) = pod_spec(hub)["containers"]
    assert env_value(hub_c, "LAYERS_HUB_TLS_CERT_FILE")
    assert hub_c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    (volume,) = [v for v in pod_spec(hub)["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == SECRET


def test_every_wired_container_trusts_the_generated_ca_beside_the_public_roots(
    fleet: list[Obj],
) -> None:
    secret = named(fleet, "Secret", SECRET)
    app = pod_spec(named(fleet, "Deployment", "demo-layers-readiness"))
    (volume,) = [v for v in app["volumes"] if v["name"] == "layers-hub-ca"]
    # Only the CA, never the hub's key, reaches the workload's pods; under the name OpenSSL
    # looks it up by.
    assert volume["secret"] == {
        "secretName": SECRET,
        "items": [{"key": "ca.crt", "path": subject_hash(pem(secret, "ca.crt")) + ".0"}],
    }
    for c in wired(fleet):
        assert env_value(c, "SSL_CERT_DIR") == "/var/run/layers-hub-ca:/etc/ssl/certs"
        assert env_value(c, "SSL_CERT_FILE") is None  # the image's roots stay (the fallback)
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == "layers-hub-ca"]
        assert mount == {
            "name": "layers-hub-ca",
            "mountPath": "/var/run/layers-hub-ca",
            "readOnly": True,
        }


@pytest.mark.parametrize("release", ["demo", "a-release-name-long-enough-to-be-cut-short-by-helm"])
def test_the_ca_file_name_is_the_subject_hash_for_any_release(release: str) -> None:
    objects = [o for objs in render_chart(DEFAULTS, name=release).values() for o in objs]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    (app,) = [
        o for o in objects if o["kind"] == "Deployment" and "hub" not in o["metadata"]["name"]
    ]
    (volume,) = [v for v in pod_spec(app)["volumes"] if v["name"] == "layers-hub-ca"]
    (item,) = volume["secret"]["items"]
    assert item["path"] == subject_hash(pem(secret, "ca.crt")) + ".0"


def test_the_certificate_is_kept_across_upgrades(fleet: list[Obj], tmp_path: Path) -> None:
    installed = named(fleet, "Secret", SECRET)
    chart = tmp_path / "layers-readiness"
    shutil.copytree(CHART_DIR, chart)
    template = chart / "templates" / "hub-tls-secret.yaml"
    text = template.read_text()
    assert text.count(LOOKUP) == 1

    def upgrade_finding(data: dict[str, str]) -> Obj:
        found = " ".join(f'"{k}" "{v}"' for k, v in data.items())
        template.write_text(text.replace(LOOKUP, f'dict "data" (dict {found})'))
        return named(objects_of(DEFAULTS, chart), "Secret", SECRET)

    # The Secret of the first install is in the cluster: the upgrade renders it unchanged.
    assert upgrade_finding(installed["data"])["data"] == installed["data"]
    # A Secret missing a part (someone edited it) is replaced by a whole new pair.
    partial = {k: v for k, v in installed["data"].items() if k != "ca.crt"}
    fresh = upgrade_finding(partial)["data"]
    assert set(fresh) == {"tls.crt", "tls.key", "ca.crt"}
    assert fresh["tls.crt"] != installed["data"]["tls.crt"]
    # Offline (nothing found), every rendering is a new pair: what `helm template` shows.
    assert named(objects_of(DEFAULTS), "Secret", SECRET)["data"] != installed["data"]


def test_cert_manager_issues_it_from_the_release_s_own_ca(tmp_path: Path) -> None:
    objects = objects_of({"hub": {"enabled": True, "tls": {"certManager": {"enabled": True}}}})
    assert not [o for o in objects if o["kind"] == "Secret"]  # cert-manager writes it
    certificate = named(objects, "Certificate", HUB)["spec"]
    assert certificate["secretName"] == SECRET
    assert f"{HUB}.{NAMESPACE}.svc" in certificate["dnsNames"]
    assert certificate["issuerRef"] == {
        "name": f"{HUB}-ca",
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    ca = named(objects, "Certificate", f"{HUB}-ca")["spec"]
    assert ca["isCA"] is True
    assert named(objects, "Issuer", f"{HUB}-ca")["spec"] == {"ca": {"secretName": ca["secretName"]}}
    assert named(objects, "Issuer", f"{HUB}-selfsigned")["spec"] == {"selfSigned": {}}
    # The wired containers find cert-manager's CA by the hash of the subject it will have (one
    # CN): made here with openssl for the same subject.
    done = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={ca['commonName']}",
            "-keyout",
            str(tmp_path / "k"),
            "-out",
            str(tmp_path / "c"),
        ],
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert done.returncode == 0
    app = pod_spec(named(objects, "Deployment", "demo-layers-readiness"))
    (volume,) = [v for v in app["volumes"] if v["name"] == "layers-hub-ca"]
    assert volume["secret"]["secretName"] == SECRET
    assert volume["secret"]["items"] == [
        {"key": "ca.crt", "path": subject_hash((tmp_path / "c").read_bytes()) + ".0"}
    ]


def test_your_issuer_or_secret_is_trusted_through_a_bundle_only() -> None:
    for tls in (
        {"certManager": {"enabled": True, "issuerRef": {"name": "platform-ca"}}},
        {"secretName": "mine"},
    ):
        values = {"hub": {"enabled": True, "tls": tls}}
        objects = objects_of(values)
        assert not [o for o in objects if o["kind"] == "Secret"]
        for c in wired(objects):
            # Its CA is not known to the chart: no guessed trust.
            assert env_value(c, "SSL_CERT_DIR") is None
            assert (env_value(c, "LAYERS_API_URL") or "").startswith("https://")
        bundle = {**tls, "caBundle": {"configMapName": "platform-ca-bundle"}}
        objects = objects_of({"hub": {"enabled": True, "tls": bundle}})
        for c in wired(objects):
            assert env_value(c, "SSL_CERT_FILE") == "/var/run/layers-hub-ca/ca-certificates.crt"


def test_plain_http_only_when_asked_for() -> None:
    objects = objects_of({"hub": {"enabled": True, "tls": {"enabled": False}}})
    assert not [o for o in objects if o["kind"] in ("Secret", "Certificate")]
    for c in wired(objects):
        assert (env_value(c, "LAYERS_API_URL") or "").startswith("http://")
        assert env_value(c, "SSL_CERT_DIR") is None


# --- the figures the docs print -----------------------------------------------------------------


def printed_hub_detection(path: Path) -> set[float]:
    """The "through the hub" detection figures of the README's fleet table (`≤ N s`)."""
    figures = set()
    for line in path.read_text().splitlines():
        if re.match(r"\| (10|1,000) \| .*≤ \d+ s \|$", line):
            figures.add(float(re.findall(r"≤ (\d+) s", line)[-1]))
    return figures


def detection(env: dict[str, str], hub_env: dict[str, str]) -> float:
    """Worst case from a kill switch to /readyz 503 through the hub, leaving out the call
    itself: the hub's cached answer may be one TTL old, then the next poll is one interval on."""
    ttl = parse_duration(hub_env["LAYERS_HUB_TTL"])
    return parse_duration(env["LAYERS_SIDECAR_INTERVAL"]) + ttl


def test_the_chart_s_defaults_give_the_printed_detection_time(fleet: list[Obj]) -> None:
    (printed,) = printed_hub_detection(ROOT / "README.md")
    hub_c = pod_spec(named(fleet, "Deployment", HUB))["containers"][0]
    hub_env = container_env(fleet, hub_c)
    serves = [c for c in wired(fleet) if c["name"] == "layers-readiness-serve"]
    assert serves
    for c in serves:
        if True:
            assert detection(container_env(fleet, c), hub_env) == printed
            # While no hub answers: the direct rate, and a kill switch within
            # fallback interval + 2 x timeout.
            env = container_env(fleet, c)
            assert env["LAYERS_FALLBACK_INTERVAL"] == "30s"
            bound = parse_duration(env["LAYERS_FALLBACK_INTERVAL"]) + 2 * parse_duration(
                env["LAYERS_SIDECAR_TIMEOUT"]
            )
            assert bound == 50
    # The bound the run test holds the defaults to: plus one call, at most the hub's timeout.
    assert parse_duration(hub_env["LAYERS_HUB_TIMEOUT"]) == 5


def test_the_kustomize_component_s_defaults_give_the_printed_detection_time() -> None:
    (printed,) = printed_hub_detection(ROOT / "README.md")
    objects = kustomize(ROOT / "deploy" / "examples" / "hub")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    (hub_c,) = pod_spec(deployments["layers-readiness-hub"])["containers"]
    hub_env = container_env(objects, hub_c)
    (serve,) = [
        c
        for _, c in all_containers(pod_spec(deployments["example-app"]))
        if c["name"] == "layers-readiness-serve"
    ]
    env = container_env(objects, serve)
    assert detection(env, hub_env) == printed
    assert env["LAYERS_FALLBACK_INTERVAL"] == "30s"
