"""The manifests really work with the program: their containers run as written.

From each rendered pod spec (`deploy/` built by kubectl kustomize, the chart rendered by Helm),
the layers-readiness containers are started the way the kubelet would start them: the image's
ENTRYPOINT and ENV (read from the Dockerfile) overlaid by the container's `command`, `args` and
`env`. Their probes are then called as the kubelet calls them: GET on the path and port the
manifest declares, success meaning 200-399.

Substituted, and nothing else, because a test machine is not a pod:
- the executable `layers-sidecar` (the image's entrypoint) -> `python -m sidecar` from this
  checkout (tests.support.command);
- LAYERS_API_URL -> the local emulator (no network here); it must have said the real API;
- LAYERS_API_KEY_FILE -> a temporary file holding exactly the data of the Secret the manifest
  mounts at that path (when the Secret is not part of the manifests, as with the chart's
  default of a user-created Secret, an obviously fake key stands in for it);
- LAYERS_SIDECAR_LISTEN -> 127.0.0.1 and a free port, since 0.0.0.0:8080 may be taken on a CI
  machine; the test first asserts that every probe's declared port resolves to the declared
  listen port, then calls the probe path on the substituted port.
Fleet mode (the hub, and the containers wired to it) adds:
- the hub container runs as written too, with its LAYERS_HUB_API_URL -> the emulator and its
  LAYERS_HUB_LISTEN moved to loopback as above;
- a wired container's LAYERS_API_URL -> that local hub (it must have named the hub's Service,
  whose targetPort must lead to the hub's listen port), and LAYERS_FALLBACK_API_URL -> the
  emulator (it must have said the real API);
- with HTTPS, LAYERS_HUB_TLS_CERT_FILE / _KEY_FILE (which must be in a mounted Secret) and a
  wired container's SSL_CERT_FILE (in a mounted ConfigMap) or SSL_CERT_DIR (the CA of a mounted
  Secret under its subject hash) -> a self-signed certificate made for the Service's name and
  127.0.0.1 (tests/test_helm_hub_run.py runs the certificate the chart generates itself).
Not reproduced: the uid, the read-only root filesystem and the dropped capabilities (the
Dockerfile tests and the schema checks cover those).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.dockerfile import DOCKERFILE, parse
from tests.k8s import (
    CHART_DIR,
    DEPLOY_DIR,
    Obj,
    all_containers,
    container,
    container_env,
    kustomize,
    pod_labels,
    pod_spec,
    render_chart,
    resolve_port,
    secret_file,
    secret_value,
    selects,
)
from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    Emulator,
    Process,
    Tls,
    certificates,
    clean_env,
    command,
    emulator,
    free_port,
    http,
    start,
    wait_for,
)

pytestmark = pytest.mark.e2e

REAL_API = "https://api.layers.com"
CHECK = "layers-readiness-check"
SERVE = "layers-readiness-serve"
# `check`'s documented exit codes (SPEC.md).
EXIT_READY, EXIT_KILL_SWITCH = 0, 5


# --- the manifests under test -------------------------------------------------------------------


def chart_objects(scenario: str) -> list[Obj]:
    values = yaml.safe_load((CHART_DIR / "ci" / f"{scenario}-values.yaml").read_text()) or {}
    return [obj for objects in render_chart(values).values() for obj in objects]


SOURCES: dict[str, Callable[[], list[Obj]]] = {
    "kustomize-classic": lambda: kustomize(DEPLOY_DIR / "examples" / "classic"),
    "kustomize-native": lambda: kustomize(DEPLOY_DIR / "examples" / "native-sidecar"),
    "helm-classic": lambda: chart_objects("classic"),
    # Native sidecar, a Secret created by the chart, bearer auth and a credit floor.
    "helm-native-secret": lambda: chart_objects("secret-and-settings"),
    # Native sidecar, the user's own Secret (not rendered): a fake key stands in.
    "helm-default": lambda: chart_objects("default"),
}
# Every wiring starts with the `check --wait` gate.
WITH_CHECK = sorted(SOURCES)


@dataclass
class Manifest:
    objects: list[Obj]
    spec: Obj


@pytest.fixture(scope="module")
def manifests() -> dict[str, Manifest]:
    built = {}
    for name, build in SOURCES.items():
        objects = build()
        (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
        built[name] = Manifest(objects, pod_spec(deployment))
    return built


# --- the image, from the Dockerfile -------------------------------------------------------------


@dataclass(frozen=True)
class Image:
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str]


def image() -> Image:
    runtime = parse(DOCKERFILE.read_text())[1][-1]
    env: dict[str, str] = {}
    for line in runtime.all("ENV"):
        for pair in line.split():
            key, _, value = pair.partition("=")
            env[key] = value
    env.pop("PATH")  # the image's PATH means nothing here; `layers-sidecar` is mapped instead
    return Image(
        entrypoint=json.loads(runtime.all("ENTRYPOINT")[-1]),
        cmd=json.loads(runtime.all("CMD")[-1]),
        env=env,
    )


# --- running a container as written -------------------------------------------------------------


@dataclass(frozen=True)
class Hub:
    """A hub a wired container must call: the URL its manifest names, and the local one."""

    declared_url: str
    url: str
    tls: Tls | None = None


@dataclass
class Prepared:
    args: list[str]  # after `layers-sidecar`
    env: dict[str, str]
    declared_port: int | None  # the port of LAYERS_SIDECAR_LISTEN as written
    port: int | None  # the port actually used
    substituted: dict[str, tuple[str, str]]


def prepare(
    manifest: Manifest,
    c: Obj,
    *,
    api_url: str,
    tmp: Path,
    hub: Hub | None = None,
    tls: Tls | None = None,
) -> Prepared:
    """`c` ready to start: `api_url` stands for the real API; with `hub`, a wired container's
    LAYERS_API_URL must be that hub's Service URL and is replaced by the local hub's. `tls` (or
    `hub.tls`) stands for the files the manifest mounts for HTTPS."""
    tls = tls or (hub.tls if hub else None)
    img = image()
    # Kubernetes: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD.
    argv = list(c.get("command") or img.entrypoint) + list(
        c.get("args") or ([] if c.get("command") else img.cmd)
    )
    assert argv[0] == "layers-sidecar", f"{c['name']} runs {argv[0]!r}, not the program"
    env = clean_env(**img.env)
    # The key must come from a file: container_env refuses values from Secrets.
    written = container_env(manifest.objects, c)
    env.update(written)
    substituted: dict[str, tuple[str, str]] = {}

    if argv[1:] == ["hub"]:
        # The hub's own variables, which it reads before the shared ones (the wired
        # containers' LAYERS_API_URL, the hub itself, may be in the same ConfigMap).
        assert env["LAYERS_HUB_API_URL"] == REAL_API
        substituted["LAYERS_HUB_API_URL"] = (env["LAYERS_HUB_API_URL"], api_url)
        env["LAYERS_HUB_API_URL"] = api_url
    elif "LAYERS_FALLBACK_API_URL" in env:  # fleet mode: the hub first, the real API as fallback
        assert hub is not None, f"{c['name']} is wired to a hub this test did not start"
        assert env["LAYERS_API_URL"] == hub.declared_url
        assert env["LAYERS_FALLBACK_API_URL"] == REAL_API
        for name, value in (("LAYERS_API_URL", hub.url), ("LAYERS_FALLBACK_API_URL", api_url)):
            substituted[name] = (env[name], value)
            env[name] = value
    else:
        assert env.get("LAYERS_API_URL") == REAL_API
        substituted["LAYERS_API_URL"] = (env["LAYERS_API_URL"], api_url)
        env["LAYERS_API_URL"] = api_url

    # HTTPS in fleet mode: the hub's certificate and key from a mounted Secret, and the CA
    # bundle a wired container trusts from a mounted ConfigMap, each replaced by a local file.
    for name, kind in (
        ("LAYERS_HUB_TLS_CERT_FILE", "secret"),
        ("LAYERS_HUB_TLS_KEY_FILE", "secret"),
        ("SSL_CERT_FILE", "configMap"),
    ):
        if name not in written:  # (this machine's own SSL_CERT_FILE, if any, stays)
            continue
        assert tls is not None, f"{c['name']} needs TLS files this test did not make"
        assert mounted_from(manifest.spec, c, env[name]) == kind, f"{c['name']}: {name}"
        local_file = {"LAYERS_HUB_TLS_KEY_FILE": tls.key, "SSL_CERT_FILE": tls.ca}.get(
            name, tls.cert
        )
        substituted[name] = (env[name], str(local_file))
        env[name] = str(local_file)
    if "SSL_CERT_DIR" in written:
        # The hub's CA, from a mounted Secret, in a directory OpenSSL searches by subject hash,
        # before the image's own roots: here this test's CA under its own hash.
        assert tls is not None, f"{c['name']} needs TLS files this test did not make"
        hub_ca_dir, _, rest = env["SSL_CERT_DIR"].partition(":")
        assert rest == "/etc/ssl/certs", "the image's roots must stay trusted (the fallback)"
        (mount,) = [m for m in c["volumeMounts"] if m["mountPath"].rstrip("/") == hub_ca_dir]
        (item,) = ca_items(manifest, mount["name"])
        assert mounted_from(manifest.spec, c, f"{hub_ca_dir}/{item['path']}") == "secret"
        # The file name is the subject hash of the CA the Secret holds, or OpenSSL never finds it.
        (secret,) = [
            o
            for o in manifest.objects
            if o["kind"] == "Secret" and o["metadata"]["name"] == projected_secret(manifest, mount)
        ]
        with tempfile.NamedTemporaryFile("w", suffix=".crt") as rendered_ca:
            rendered_ca.write(secret_value(secret, item["key"]))
            rendered_ca.flush()
            assert item["path"] == subject_hash_file(Path(rendered_ca.name))
        local_dir = tmp / "hub-ca"
        local_dir.mkdir(exist_ok=True)
        (local_dir / subject_hash_file(tls.ca)).write_bytes(tls.ca.read_bytes())
        substituted["SSL_CERT_DIR"] = (env["SSL_CERT_DIR"], str(local_dir))
        env["SSL_CERT_DIR"] = str(local_dir)

    if argv[1:] == ["hub"]:
        # The hub holds no key: each caller's passes through it.
        assert not {"LAYERS_API_KEY", "LAYERS_API_KEY_FILE"} & set(env)
        return listening(Prepared(argv[1:], env, None, None, substituted), "LAYERS_HUB_LISTEN")

    key_path = env["LAYERS_API_KEY_FILE"]
    found = secret_file(manifest.objects, manifest.spec, c, key_path)
    assert found is not None, f"{c['name']}: no Secret mounted at {key_path}"
    secret, key = found
    data = secret_value(secret, key) if secret.get("data") or secret.get("stringData") else FAKE_KEY
    local = tmp / key_path.lstrip("/")
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text(data)
    substituted["LAYERS_API_KEY_FILE"] = (key_path, str(local))
    env["LAYERS_API_KEY_FILE"] = str(local)

    prepared = Prepared(argv[1:], env, None, None, substituted)
    return listening(prepared) if argv[1:] == ["serve"] else prepared


def mounted_from(spec: Obj, c: Obj, path: str) -> str | None:
    """The kind of volume ("secret", "configMap", ...) that shows the file `path` inside `c`,
    read-only and as a directory (a subPath never sees an update), or None."""
    for mount in c.get("volumeMounts") or []:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        assert mount.get("readOnly") is True, f"{c['name']}: {mount['name']} is writable"
        assert "subPath" not in mount, f"{c['name']}: {mount['name']} is a subPath"
        (volume,) = [v for v in spec.get("volumes") or [] if v["name"] == mount["name"]]
        (kind,) = [k for k in volume if k != "name"]
        items = volume[kind].get("items")
        relative = path[len(prefix) :]
        assert items is None or relative in {i["path"] for i in items}, f"{path} not projected"
        return str(kind)
    return None


def listening(prepared: Prepared, variable: str = "LAYERS_SIDECAR_LISTEN") -> Prepared:
    """The listen address (`variable`) moved to loopback and a free port."""
    env = prepared.env
    listen = env[variable]
    host, _, declared = listen.rpartition(":")
    assert host == "0.0.0.0", "in a pod the probes come from the kubelet, not loopback"
    prepared.declared_port, prepared.port = int(declared), free_port()
    env[variable] = f"127.0.0.1:{prepared.port}"
    prepared.substituted[variable] = (listen, env[variable])
    return prepared


def ca_items(manifest: Manifest, volume: str) -> list[Obj]:
    (found,) = [v for v in manifest.spec["volumes"] if v["name"] == volume]
    items: list[Obj] = found["secret"]["items"]
    return items


def projected_secret(manifest: Manifest, mount: Obj) -> str:
    (found,) = [v for v in manifest.spec["volumes"] if v["name"] == mount["name"]]
    return str(found["secret"]["secretName"])


def subject_hash_file(ca: Path) -> str:
    """The name OpenSSL looks `ca` up by in an SSL_CERT_DIR directory."""
    found = subprocess.run(
        ["openssl", "x509", "-noout", "-subject_hash", "-in", str(ca)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return found.stdout.strip() + ".0"


def run_check(
    manifest: Manifest,
    api_url: str,
    tmp: Path,
    hub: Hub | None = None,
    *,
    deadline: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The gate as written; `deadline` adds `--deadline` (a bound the manifests do not set, so
    that a hard stop ends the run with its code instead of waiting for ever)."""
    c = container(manifest.spec, CHECK)
    prepared = prepare(manifest, c, api_url=api_url, tmp=tmp, hub=hub)
    assert prepared.args == ["check", "--wait"]
    bound = [] if deadline is None else ["--deadline", deadline]
    return subprocess.run(
        command(*prepared.args, *bound),
        env=prepared.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@dataclass
class Running:
    process: Process
    container: Obj
    prepared: Prepared
    app: Obj

    def probe(self, c: Obj, which: str) -> int:
        """Calls `which` of container `c` as the kubelet does; returns the HTTP status."""
        probe = c[which]
        get = probe["httpGet"]
        declared = resolve_port(c, get["port"])
        # The probe must reach the sidecar: its port is the one the sidecar was told to use.
        assert declared == self.prepared.declared_port, f"{c['name']}.{which} asks port {declared}"
        # HTTPS where the program serves it (the hub with TLS): the kubelet then skips
        # verification, this test verifies against the certificate it made.
        scheme = get.get("scheme", "HTTP")
        serves_tls = "LAYERS_HUB_TLS_CERT_FILE" in self.prepared.env
        assert scheme == ("HTTPS" if serves_tls else "HTTP"), f"{c['name']}.{which}: {scheme}"
        reply = http(
            "GET",
            f"{scheme.lower()}://127.0.0.1:{self.prepared.port}{get['path']}",
            headers={"User-Agent": "kube-probe/1.29", "Accept": "*/*"},
            timeout=float(probe.get("timeoutSeconds", 1)),
        )
        return reply.status

    def passes(self, c: Obj, which: str) -> bool:
        return 200 <= self.probe(c, which) < 400

    def sidecar(self, which: str) -> int:
        return self.probe(self.container, which)


class RunServe(Protocol):
    def __call__(self, manifest: Manifest, api_url: str, hub: Hub | None = None) -> Running: ...


@pytest.fixture
def run_serve(tmp_path: Path) -> Iterator[RunServe]:
    started: list[Process] = []

    def run(manifest: Manifest, api_url: str, hub: Hub | None = None) -> Running:
        c = container(manifest.spec, SERVE)
        prepared = prepare(manifest, c, api_url=api_url, tmp=tmp_path, hub=hub)
        process = start(
            prepared.args,
            env=prepared.env,
            tmp=tmp_path,
            name="sidecar",
            url=f"http://127.0.0.1:{prepared.port}",
            ready_path="/livez",
        )
        started.append(process)
        app = manifest.spec["containers"][0]
        return Running(process, c, prepared, app)

    yield run
    for process in started:
        process.stop()


def first_poll_done(em: Emulator, running: Running) -> Callable[[], bool]:
    def done() -> bool:
        status = running.process.get("/status").json()
        return em.whoami_requests() >= 1 and status.get("lastOutcome") is not None

    return done


# --- the tests ----------------------------------------------------------------------------------


def test_every_source_wires_the_program(manifests: dict[str, Manifest]) -> None:
    for name, manifest in manifests.items():
        names = [c["name"] for c in manifest.spec.get("initContainers", [])]
        names += [c["name"] for c in manifest.spec["containers"]]
        assert SERVE in names, name
        # The gate first, whatever the mode.
        assert names[0] == CHECK, name


@pytest.mark.parametrize("source", WITH_CHECK)
def test_init_container_check_exits_as_documented(
    manifests: dict[str, Manifest], source: str, tmp_path: Path
) -> None:
    manifest = manifests[source]
    with emulator(tmp_path) as em:
        healthy = run_check(manifest, em.url, tmp_path)
        assert healthy.returncode == EXIT_READY, healthy.stderr
        stats = em.stats()
        assert stats["lastKeyId"] == "k1", "the key came from the mounted Secret's file"
        em.set(killSwitch=True)
        # With a deadline given, --wait ends there with the switch's own code.
        stopped = run_check(manifest, em.url, tmp_path, deadline="2s")
        assert stopped.returncode == EXIT_KILL_SWITCH, stopped.stderr
        em.reset()
        em.set(failure="kill_switch")  # the 503 KILL_SWITCH form of the same switch
        assert run_check(manifest, em.url, tmp_path, deadline="1s").returncode == EXIT_KILL_SWITCH
    for output in (healthy, stopped):
        assert FAKE_SECRET not in output.stdout + output.stderr


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_sidecar_probes_pass_with_a_healthy_key(
    manifests: dict[str, Manifest],
    source: str,
    tmp_path: Path,
    run_serve: RunServe,
) -> None:
    with emulator(tmp_path) as em:
        running = run_serve(manifests[source], em.url)
        c = running.container
        # The kubelet retries the startup probe every periodSeconds, failureThreshold times.
        budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
        wait_for(lambda: running.passes(c, "startupProbe"), timeout=budget, what="startup")
        wait_for(lambda: running.passes(c, "readinessProbe"), timeout=15, what="ready")
        assert running.sidecar("readinessProbe") == 200
        assert running.sidecar("livenessProbe") == 200
        if "readinessProbe" in running.app:
            assert running.probe(running.app, "readinessProbe") == 200
        stats = em.stats()
        assert stats["lastKeyId"] == "k1"
        # The scheme the manifest asks for (the program's default when it names none).
        assert stats["lastAuthScheme"] == running.prepared.env.get(
            "LAYERS_AUTH_SCHEME", "x-api-key"
        )
    assert FAKE_SECRET not in running.process.stdout + running.process.stderr


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_sidecar_probes_fail_while_the_kill_switch_is_on(
    manifests: dict[str, Manifest],
    source: str,
    tmp_path: Path,
    run_serve: RunServe,
) -> None:
    with emulator(tmp_path) as em:
        em.set(killSwitch=True)
        running = run_serve(manifests[source], em.url)
        c = running.container
        wait_for(first_poll_done(em, running), timeout=15, what="the first poll")
        assert running.process.get("/status").json()["lastOutcome"] == "kill_switch"
        # The startupProbe asks /livez: a kill switch never makes the kubelet restart the
        # sidecar (the gate held the pod until the key was healthy).
        if "startupProbe" in c:
            assert running.sidecar("startupProbe") == 200
        # The pod is not ready: it leaves its Service's endpoints...
        assert running.sidecar("readinessProbe") == 503
        if "readinessProbe" in running.app:
            assert running.probe(running.app, "readinessProbe") == 503
        # ...but stays alive: a restart cannot clear a kill switch.
        assert running.sidecar("livenessProbe") == 200


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_only_the_documented_settings_are_substituted(
    manifests: dict[str, Manifest], source: str, tmp_path: Path
) -> None:
    manifest = manifests[source]
    for name in (CHECK, SERVE):
        try:
            c = container(manifest.spec, name)
        except AssertionError:
            continue
        prepared = prepare(manifest, c, api_url="http://127.0.0.1:9", tmp=tmp_path)
        written = container_env(manifest.objects, c)
        changed = {k for k, v in written.items() if prepared.env.get(k) != v}
        assert changed == set(prepared.substituted)
        allowed = {
            "LAYERS_API_URL",
            "LAYERS_FALLBACK_API_URL",
            "LAYERS_API_KEY_FILE",
            "LAYERS_SIDECAR_LISTEN",
        }
        assert changed <= allowed
        assert {"LAYERS_API_URL", "LAYERS_API_KEY_FILE"} <= changed
        assert prepared.args == (c.get("args") or image().cmd)


# --- fleet mode: the hub and the sidecars wired to it --------------------------------------------

HUB = "layers-readiness-hub"  # the hub container


def chart_values(scenario: str, **overrides: Any) -> list[Obj]:
    values = yaml.safe_load((CHART_DIR / "ci" / f"{scenario}-values.yaml").read_text()) or {}
    values.update(overrides)
    return [obj for objects in render_chart(values).values() for obj in objects]


HUB_SOURCES: dict[str, Callable[[], list[Obj]]] = {
    # The hub's own PodMonitor, NetworkPolicy and PDB beside it; the native sidecar wired to it.
    "helm-hub": lambda: chart_objects("hub"),
    # The init container `check` and the classic sidecar wired to it.
    "helm-hub-classic": lambda: chart_values("hub", wiring={"mode": "classic"}),
    "kustomize-hub": lambda: kustomize(DEPLOY_DIR / "examples" / "hub"),
    # HTTPS: the hub's certificate from a Secret, the sidecars' CA bundle from a ConfigMap.
    "helm-hub-tls": lambda: chart_objects("hub-tls"),
    # The defaults: HTTPS with the chart's own CA, which the sidecars trust by SSL_CERT_DIR.
    "helm-hub-defaults": lambda: chart_objects("hub-defaults"),
}


@dataclass
class Fleet:
    app: Manifest
    hub: Manifest
    declared_url: str  # the hub URL the wired containers are given
    tls: Tls | None  # with HTTPS: a certificate for the declared host (and 127.0.0.1)

    def hub_container(self) -> Obj:
        return container(self.hub.spec, HUB)

    def through(self, url: str) -> Hub:
        """The hub a wired container calls: the declared one, at `url` here."""
        return Hub(self.declared_url, url, self.tls)


def service_port(service: Obj, url: str) -> int | str:
    """The Service's targetPort that `url` (http://NAME[.NAMESPACE.svc]:PORT) reaches."""
    parts = urlsplit(url)
    name, _, rest = (parts.hostname or "").partition(".")
    assert name == service["metadata"]["name"], url
    assert rest in ("", f"{service['metadata'].get('namespace')}.svc"), url
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == parts.port]
    target: int | str = port["targetPort"]
    return target


@pytest.fixture(scope="module")
def fleets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fleet]:
    built = {}
    for name, build in HUB_SOURCES.items():
        objects = build()
        deployments = [o for o in objects if o["kind"] == "Deployment"]
        (hub,) = [
            d for d in deployments if any(c["name"] == HUB for _, c in all_containers(pod_spec(d)))
        ]
        (app,) = [d for d in deployments if d is not hub]
        # The Service that selects the hub's pods is the one the wired containers must call.
        (service,) = [
            o
            for o in objects
            if o["kind"] == "Service"
            and selects({"matchLabels": o["spec"]["selector"]}, pod_labels(hub))
        ]
        app_manifest = Manifest(objects, pod_spec(app))
        declared = container_env(objects, container(app_manifest.spec, SERVE))["LAYERS_API_URL"]
        hub_manifest = Manifest(objects, pod_spec(hub))
        # ...and that Service leads to the port the hub listens on.
        hub_c = container(hub_manifest.spec, HUB)
        listen = container_env(objects, hub_c)["LAYERS_HUB_LISTEN"]
        assert resolve_port(hub_c, service_port(service, declared)) == int(listen.rsplit(":", 1)[1])
        tls = None
        if urlsplit(declared).scheme == "https":
            tls = certificates(
                tmp_path_factory.mktemp(name), urlsplit(declared).hostname or "", "127.0.0.1"
            )
        built[name] = Fleet(app_manifest, hub_manifest, declared, tls)
    return built


@pytest.fixture
def run_hub(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[Fleet, str], Running]]:
    """The hub container started as written, against `api_url` in place of the real API."""
    started: list[Process] = []

    def run(fleet: Fleet, api_url: str) -> Running:
        c = fleet.hub_container()
        prepared = prepare(fleet.hub, c, api_url=api_url, tmp=tmp_path, tls=fleet.tls)
        assert prepared.args == ["hub"]
        scheme = "http"
        if fleet.tls:
            scheme = "https"
            monkeypatch.setenv("SSL_CERT_FILE", str(fleet.tls.ca))  # this test's own client
        process = start(
            prepared.args,
            env=prepared.env,
            tmp=tmp_path,
            name=f"hub-{len(started)}",
            url=f"{scheme}://127.0.0.1:{prepared.port}",
            ready_path="/livez",
        )
        started.append(process)
        return Running(process, c, prepared, c)

    yield run
    for process in started:
        process.stop()


def hub_counter(hub: Running, name: str, **labels: str) -> float:
    """The value of one sample of the hub's /metrics, 0 when there is none."""
    for family in text_string_to_metric_families(hub.process.get("/metrics").body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("source", sorted(HUB_SOURCES))
def test_hub_probes_pass_and_the_sidecar_asks_through_it(
    fleets: dict[str, Fleet],
    source: str,
    tmp_path: Path,
    run_hub: Callable[[Fleet, str], Running],
    run_serve: RunServe,
) -> None:
    fleet = fleets[source]
    with emulator(tmp_path) as em:
        hub = run_hub(fleet, em.url)
        wait_for(lambda: hub.passes(hub.container, "readinessProbe"), timeout=15, what="hub ready")
        assert hub.sidecar("livenessProbe") == 200
        running = run_serve(fleet.app, em.url, fleet.through(hub.process.url))
        c = running.container
        wait_for(lambda: running.passes(c, "readinessProbe"), timeout=30, what="sidecar ready")
        assert running.sidecar("readinessProbe") == 200
        # The answer came through the hub: it called the upstream, with the pod's key.
        assert hub_counter(hub, "layers_hub_upstream_requests_total", outcome="ok") >= 1
        assert em.stats()["lastKeyId"] == "k1"
    for process in (hub.process, running.process):
        assert FAKE_SECRET not in process.stdout + process.stderr


@pytest.mark.parametrize("source", sorted(HUB_SOURCES))
def test_a_kill_switch_reaches_the_pod_through_the_hub(
    fleets: dict[str, Fleet],
    source: str,
    tmp_path: Path,
    run_hub: Callable[[Fleet, str], Running],
    run_serve: RunServe,
) -> None:
    fleet = fleets[source]
    with emulator(tmp_path) as em:
        em.set(killSwitch=True)
        hub = run_hub(fleet, em.url)
        running = run_serve(fleet.app, em.url, fleet.through(hub.process.url))
        wait_for(first_poll_done(em, running), timeout=15, what="the first poll")
        assert running.process.get("/status").json()["lastOutcome"] == "kill_switch"
        assert running.sidecar("readinessProbe") == 503
        assert running.sidecar("livenessProbe") == 200
        # One series for the key at the hub, whatever the number of pods.
        assert "layers_hub_kill_switch{" in hub.process.get("/metrics").body
        # The hub serves: its own probes say so, never what Layers answered.
        assert hub.sidecar("readinessProbe") == 200


@pytest.mark.parametrize("source", sorted(HUB_SOURCES))
def test_a_dead_hub_does_not_stop_the_pod(
    fleets: dict[str, Fleet], source: str, tmp_path: Path, run_serve: RunServe
) -> None:
    """Nothing listens at the hub's address: the same poll asks the fallback, the real API."""
    fleet = fleets[source]
    dead = fleet.through(f"http://127.0.0.1:{free_port()}")
    with emulator(tmp_path) as em:
        running = run_serve(fleet.app, em.url, dead)
        c = running.container
        wait_for(
            lambda: running.passes(c, "readinessProbe"),
            timeout=30,
            what="ready through the fallback",
        )
        assert running.process.get("/status").json()["lastOutcome"] == "ok"
        assert em.stats()["lastKeyId"] == "k1"


def test_init_check_exits_as_documented_through_the_hub(
    fleets: dict[str, Fleet], tmp_path: Path, run_hub: Callable[[Fleet, str], Running]
) -> None:
    fleet = fleets["helm-hub-classic"]
    with emulator(tmp_path) as em:
        hub = run_hub(fleet, em.url)
        through = fleet.through(hub.process.url)
        healthy = run_check(fleet.app, em.url, tmp_path, through)
        assert healthy.returncode == EXIT_READY, healthy.stderr
        assert hub_counter(hub, "layers_hub_upstream_requests_total", outcome="ok") >= 1
        em.set(killSwitch=True)
        # A fresh hub: the first one may still serve its cached healthy answer for its TTL.
        fresh = run_hub(fleet, em.url)
        stopped = run_check(
            fleet.app, em.url, tmp_path, fleet.through(fresh.process.url), deadline="2s"
        )
        assert stopped.returncode == EXIT_KILL_SWITCH, stopped.stderr
        dead = fleet.through(f"http://127.0.0.1:{free_port()}")
        em.reset()
        assert run_check(fleet.app, em.url, tmp_path, dead).returncode == EXIT_READY


def test_example_job_runs_its_gate_then_its_work_and_ends(tmp_path: Path) -> None:
    """The chart's example Job as written (classic mode): `check --wait` (bounded by the
    LAYERS_SIDECAR_DEADLINE the Job sets) passes, the work's shell script runs on this
    machine's /bin/sh and exits 0, and no container of ours is left to keep the pod running."""
    objects = chart_objects("job")
    (job,) = [o for o in objects if o["kind"] == "Job"]
    manifest = Manifest(objects, pod_spec(job))
    assert [c["name"] for c in manifest.spec["containers"]] == ["work"]
    with emulator(tmp_path) as em:
        checked = run_check(manifest, em.url, tmp_path)
        assert checked.returncode == EXIT_READY, checked.stderr
        shell, flag, script = container(manifest.spec, "work")["command"]
        done = subprocess.run(
            [shell, flag, script], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "reporting the day's numbers with a healthy key" in done.stdout
