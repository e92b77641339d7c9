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
Not reproduced: the uid, the read-only root filesystem and the dropped capabilities (the
Dockerfile tests and the schema checks cover those).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.dockerfile import DOCKERFILE, parse
from tests.k8s import (
    CHART_DIR,
    DEPLOY_DIR,
    Obj,
    container,
    container_env,
    kustomize,
    pod_spec,
    render_chart,
    resolve_port,
    secret_file,
    secret_value,
)
from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    Emulator,
    Process,
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
SERVE = "layers-readiness"
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
WITH_CHECK = ["kustomize-classic", "helm-classic"]


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


@dataclass
class Prepared:
    args: list[str]  # after `layers-sidecar`
    env: dict[str, str]
    declared_port: int | None  # the port of LAYERS_SIDECAR_LISTEN as written
    port: int | None  # the port actually used
    substituted: dict[str, tuple[str, str]]


def prepare(manifest: Manifest, c: Obj, *, api_url: str, tmp: Path) -> Prepared:
    img = image()
    # Kubernetes: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD.
    argv = list(c.get("command") or img.entrypoint) + list(
        c.get("args") or ([] if c.get("command") else img.cmd)
    )
    assert argv[0] == "layers-sidecar", f"{c['name']} runs {argv[0]!r}, not the program"
    env = clean_env(**img.env)
    # The key must come from a file: container_env refuses values from Secrets.
    env.update(container_env(manifest.objects, c))
    substituted: dict[str, tuple[str, str]] = {}

    assert env.get("LAYERS_API_URL") == REAL_API
    substituted["LAYERS_API_URL"] = (env["LAYERS_API_URL"], api_url)
    env["LAYERS_API_URL"] = api_url

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

    declared_port = port = None
    if argv[1:] == ["serve"]:
        listen = env["LAYERS_SIDECAR_LISTEN"]
        host, _, declared = listen.rpartition(":")
        assert host == "0.0.0.0", "in a pod the probes come from the kubelet, not loopback"
        declared_port, port = int(declared), free_port()
        env["LAYERS_SIDECAR_LISTEN"] = f"127.0.0.1:{port}"
        substituted["LAYERS_SIDECAR_LISTEN"] = (listen, env["LAYERS_SIDECAR_LISTEN"])
    return Prepared(argv[1:], env, declared_port, port, substituted)


def run_check(manifest: Manifest, api_url: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    prepared = prepare(manifest, container(manifest.spec, CHECK), api_url=api_url, tmp=tmp)
    assert prepared.args == ["check"]
    return subprocess.run(
        command(*prepared.args),
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
        assert get.get("scheme", "HTTP") == "HTTP"
        reply = http(
            "GET",
            f"http://127.0.0.1:{self.prepared.port}{get['path']}",
            headers={"User-Agent": "kube-probe/1.29", "Accept": "*/*"},
            timeout=float(probe.get("timeoutSeconds", 1)),
        )
        return reply.status

    def passes(self, c: Obj, which: str) -> bool:
        return 200 <= self.probe(c, which) < 400

    def sidecar(self, which: str) -> int:
        return self.probe(self.container, which)


@pytest.fixture
def run_serve(tmp_path: Path) -> Iterator[Callable[[Manifest, str], Running]]:
    started: list[Process] = []

    def run(manifest: Manifest, api_url: str) -> Running:
        c = container(manifest.spec, SERVE)
        prepared = prepare(manifest, c, api_url=api_url, tmp=tmp_path)
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
        assert (CHECK in names) == (name in WITH_CHECK), name


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
        stopped = run_check(manifest, em.url, tmp_path)
        assert stopped.returncode == EXIT_KILL_SWITCH, stopped.stderr
        em.reset()
        em.set(failure="kill_switch")  # the 503 KILL_SWITCH form of the same switch
        assert run_check(manifest, em.url, tmp_path).returncode == EXIT_KILL_SWITCH
    for output in (healthy, stopped):
        assert FAKE_SECRET not in output.stdout + output.stderr


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_sidecar_probes_pass_with_a_healthy_key(
    manifests: dict[str, Manifest],
    source: str,
    tmp_path: Path,
    run_serve: Callable[[Manifest, str], Running],
) -> None:
    with emulator(tmp_path) as em:
        running = run_serve(manifests[source], em.url)
        c = running.container
        if "startupProbe" in c:
            # The kubelet retries the startup probe every periodSeconds, failureThreshold times.
            budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
            wait_for(lambda: running.passes(c, "startupProbe"), timeout=budget, what="startup")
        else:
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
    run_serve: Callable[[Manifest, str], Running],
) -> None:
    with emulator(tmp_path) as em:
        em.set(killSwitch=True)
        running = run_serve(manifests[source], em.url)
        c = running.container
        wait_for(first_poll_done(em, running), timeout=15, what="the first poll")
        assert running.process.get("/status").json()["lastOutcome"] == "kill_switch"
        # Start-up stays gated (native sidecar): the application is held back.
        if "startupProbe" in c:
            assert running.sidecar("startupProbe") == 503
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
        allowed = {"LAYERS_API_URL", "LAYERS_API_KEY_FILE", "LAYERS_SIDECAR_LISTEN"}
        assert changed <= allowed
        assert {"LAYERS_API_URL", "LAYERS_API_KEY_FILE"} <= changed
        assert prepared.args == (c.get("args") or image().cmd)


def test_example_job_runs_and_its_work_ends_the_sidecar(
    tmp_path: Path, run_serve: Callable[[Manifest, str], Running]
) -> None:
    """The chart's example Job as written: `check` passes, the sidecar serves, the work's shell
    script (run by this machine's /bin/sh and curl) waits for it, works, and ends it with
    POST /quitquitquit; the sidecar exits 0 and so does the work, so the Job completes.
    Substituted in the script as for the sidecar: its declared port for the port it listens on."""
    objects = chart_objects("job-quitquitquit")
    (job,) = [o for o in objects if o["kind"] == "Job"]
    manifest = Manifest(objects, pod_spec(job))
    with emulator(tmp_path) as em:
        checked = run_check(manifest, em.url, tmp_path)
        assert checked.returncode == EXIT_READY, checked.stderr
        running = run_serve(manifest, em.url)
        work = container(manifest.spec, "work")
        shell, flag, script = work["command"]
        declared = f"http://127.0.0.1:{running.prepared.declared_port}/"
        assert declared in script
        script = script.replace(declared, f"http://127.0.0.1:{running.prepared.port}/")
        done = subprocess.run(
            [shell, flag, script], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "reporting the day's numbers with a healthy key" in done.stdout
        assert running.process.proc.wait(timeout=15) == 0, running.process.stderr
