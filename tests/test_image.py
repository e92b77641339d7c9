"""The image, built from the Dockerfile and run as a pod would run it.

One build per session (`tests/image.py`: buildah, real or Debian-made base images), run by podman
(`tests/container.py`). The build gets a CA bundle as the `ca` build secret, the way a user
behind a TLS-intercepting proxy builds; it must not end up in the image. The built image then
runs as uid 65532 with a read-only root filesystem, no capabilities and no shell, against the
emulator on loopback: `check` exits 0 and 5 as documented, `serve` answers `/readyz` and its
`/metrics` passes `promtool check metrics`, and it writes nothing but the mounted /tmp.

The output says which base images were used and how large the image is.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sidecar import __version__
from sidecar.commands import load
from tests import container, image, kubelet, kubelet_pod, release, wiring
from tests.container import KEY_FILE, Sandbox, Security
from tests.image import Built, Store
from tests.k8s import (
    DEPLOY_DIR,
    IMAGE_UID,
    Obj,
    all_containers,
    container_env,
    kustomizations,
    kustomize,
    pod_spec,
    render_chart,
    workloads,
)
from tests.support import FAKE_KEY, Emulator, emulator, free_port, http, wait_for
from tests.tools import tool

pytestmark = pytest.mark.image

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def st() -> Store:
    # buildah or podman missing fails with the command that installs them (tests/tools.py).
    return image.store()


@dataclass(frozen=True)
class CaBundle:
    source: Path  # this machine's bundle
    path: Path  # a copy with the marker, which the build gets
    marker: str  # a line appended to the bundle, found nowhere else


@pytest.fixture(scope="module")
def ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> CaBundle:
    """This machine's CA bundle (which trusts a TLS-intercepting proxy if there is one)."""
    system = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    if not system.is_file():
        pytest.fail(
            f"no CA bundle at {system}: install Debian's ca-certificates or set SSL_CERT_FILE"
        )
    marker = f"# layers-readiness build-secret marker {uuid.uuid4().hex}"
    bundle = tmp_path_factory.mktemp("ca") / "ca.pem"
    # PEM readers skip text outside BEGIN/END blocks, so the marker leaves the bundle valid.
    bundle.write_text(system.read_text() + f"\n{marker}\n")
    return CaBundle(system, bundle, marker)


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(image.ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "0" * 40


def announce(config: pytest.Config, text: str) -> None:
    """A line in the test output even under capture: which bases, how long, how large."""
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(f"\n[image] {text}")


@pytest.fixture(scope="module")
def built(st: Store, ca_bundle: CaBundle, pytestconfig: pytest.Config) -> Iterator[Built]:
    bases = image.bases(st)
    announce(pytestconfig, f"building with {bases.describe()}")
    ref = f"localhost/layers-readiness:test-{os.getpid()}"
    result = image.build(
        st,
        bases,
        ref=ref,
        build_args={
            "VERSION": __version__,
            "REVISION": git_revision(),
            "SOURCE": release.settings().source(release.Artifacts(__version__).sdist),
        },
        ca_bundle=ca_bundle.path,
    )
    announce(
        pytestconfig,
        f"built {ref} in {result.seconds:.0f} s (storage {st.driver}, runtime "
        f"{st.runtime or 'podman default'}): {result.size / MiB:.1f} MiB unpacked, "
        f"{(result.size - result.base_size) / MiB:.1f} MiB over the runtime base, "
        f"{result.pulled_size / MiB:.1f} MiB compressed ({result.own_pulled_size / MiB:.1f} MiB "
        f"over the base); {ca_bundle.source} (+ a marker) as the `ca` build secret",
    )
    try:
        yield result
    finally:
        image.remove_image(st, ref)


@pytest.fixture(scope="module")
def rootfs(st: Store, built: Built) -> Iterator[Path]:
    with image.mounted(st, built.ref) as path:
        yield path


# --- what was built -----------------------------------------------------------------------------


def test_labels_carry_the_source_version_and_revision(st: Store, built: Built) -> None:
    labels = image.config(st, built.ref)["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    assert labels["org.opencontainers.image.revision"] == built.build_args["REVISION"]
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    # The project's home, or while it has none the source distribution released beside it.
    assert labels["org.opencontainers.image.source"] == built.build_args["SOURCE"]
    assert re.fullmatch(r"https://\S+|layers_readiness-\S+\.tar\.gz", built.build_args["SOURCE"])
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_runs_as_the_fixed_user_with_the_program_as_entrypoint(st: Store, built: Built) -> None:
    cfg = image.config(st, built.ref)["config"]
    assert cfg["User"] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert cfg["Entrypoint"] == ["layers-sidecar"]
    assert cfg["Cmd"] == ["serve"]
    assert "8080/tcp" in cfg["ExposedPorts"]


def test_the_ca_build_secret_stays_out_of_the_image(
    st: Store, built: Built, rootfs: Path, ca_bundle: CaBundle
) -> None:
    assert not (rootfs / "run/secrets/ca").exists()
    # No file of the image, and nothing in its config or history, holds the bundle's marker.
    grep = subprocess.run(
        ["grep", "-r", "-l", "-F", "--no-messages", ca_bundle.marker, str(rootfs)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert grep.returncode == 1, f"the CA bundle is in the image: {grep.stdout}"
    oci = image.config(st, built.ref)
    assert ca_bundle.marker not in json.dumps(oci)
    assert "/run/secrets/ca" not in json.dumps(oci["config"])  # not in ENV, nor anywhere else


def test_the_runtime_has_no_shell_and_no_pip(rootfs: Path) -> None:
    for shell in image.SHELLS:
        assert not (rootfs / shell.lstrip("/")).exists(), shell
    venv_bin = rootfs / "opt/venv/bin"
    assert (venv_bin / "layers-sidecar").is_file()
    assert not list(venv_bin.glob("pip*"))
    # The venv's interpreter is the base image's Debian 12 Python 3.11, whichever base was used.
    assert os.readlink(venv_bin / "python3") == "/usr/bin/python3"
    assert (rootfs / "usr/bin/python3.11").is_file()


def test_var_run_is_run_in_the_image(rootfs: Path) -> None:
    """Debian's layout, which the distroless base shares: /var/run is a link to /run, so a mount
    at /var/run/x and one at /run/x are one place. The docs' examples keep clear of both
    (tests/test_docs.py)."""
    assert (rootfs / "var/run").is_symlink()
    assert os.readlink(rootfs / "var/run") in ("/run", "../run")


# --- run as a pod runs it -----------------------------------------------------------------------


def image_containers() -> list[tuple[str, Security]]:
    """Every container of this image in the chart (default values) and the deploy/ examples."""
    sources = {"chart": [o for docs in render_chart().values() for o in docs]}
    for directory in kustomizations():
        sources[str(directory.relative_to(DEPLOY_DIR))] = kustomize(directory)
    found = []
    for source, objects in sources.items():
        for workload in workloads(objects):
            spec = pod_spec(workload)
            for _, c in all_containers(spec):
                if "/layers-readiness:" in c["image"] or "/layers-readiness@" in c["image"]:
                    found.append((f"{source}: {c['name']}", Security.of(spec, c)))
    return found


def test_the_runs_below_use_the_security_context_of_every_manifest() -> None:
    found = image_containers()
    assert len(found) >= 3, found
    for where, security in found:
        assert security == container.RESTRICTED, where


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as em:
        yield em


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    """The Secret as the kubelet mounts it: a directory with one file the pod's user can read."""
    directory = tmp_path / "secret"
    directory.mkdir()
    (directory / "api-key").write_text(FAKE_KEY)
    directory.chmod(0o755)
    (directory / "api-key").chmod(0o644)
    return directory


@pytest.fixture
def writable_tmp(tmp_path: Path) -> Path:
    """The one writable place, as an `emptyDir` at /tmp would be."""
    directory = tmp_path / "container-tmp"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def sandbox(upstream: Emulator, key_dir: Path, writable_tmp: Path, **env: str) -> Sandbox:
    return Sandbox(
        tmp=writable_tmp,
        key_dir=key_dir,
        env={"LAYERS_API_URL": upstream.url, "LAYERS_API_KEY_FILE": KEY_FILE, **env},
    )


PROBE = """
import errno, json, os
def write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
status = dict(line.split(":\\t", 1) for line in open("/proc/self/status").read().splitlines()
              if ":\\t" in line)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(),
    "CapEff": status["CapEff"].strip(), "CapBnd": status["CapBnd"].strip(),
    "NoNewPrivs": status["NoNewPrivs"].strip(),
    "write /": write("/probe"), "write /opt/venv": write("/opt/venv/probe"),
    "write /home": write("/home/probe"), "write /tmp": write("/tmp/probe"),
}))
"""


def test_the_sandbox_is_what_the_manifests_ask_for(
    st: Store, built: Built, writable_tmp: Path
) -> None:
    # The image's own Python, entered directly: no shell is involved anywhere.
    probe = Sandbox(tmp=writable_tmp, entrypoint="/usr/bin/python3")
    done = container.run_once(st, built.ref, probe, "-c", PROBE)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["uid"] == seen["gid"] == IMAGE_UID
    assert seen["CapEff"] == seen["CapBnd"] == "0000000000000000"
    assert seen["NoNewPrivs"] == "1"
    assert seen["write /"] == seen["write /opt/venv"] == seen["write /home"] == "EROFS"
    assert seen["write /tmp"] == "ok"
    assert (writable_tmp / "probe").read_text() == "x"


def test_check_exits_0_against_a_healthy_key(
    st: Store, built: Built, upstream: Emulator, key_dir: Path, writable_tmp: Path
) -> None:
    done = container.run_once(st, built.ref, sandbox(upstream, key_dir, writable_tmp), "check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert upstream.whoami_requests() >= 1
    assert FAKE_KEY not in done.stdout + done.stderr


def test_check_exits_5_on_the_kill_switch(
    st: Store, built: Built, upstream: Emulator, key_dir: Path, writable_tmp: Path
) -> None:
    upstream.set(killSwitch=True)
    done = container.run_once(st, built.ref, sandbox(upstream, key_dir, writable_tmp), "check")
    assert done.returncode == 5, done.stdout + done.stderr


@pytest.mark.parametrize("read_only", [True, False], ids=["read-only-root", "writable-root"])
def test_serve_is_ready_exports_valid_metrics_and_writes_nothing(
    st: Store,
    built: Built,
    upstream: Emulator,
    key_dir: Path,
    writable_tmp: Path,
    read_only: bool,
) -> None:
    port = free_port()
    base = sandbox(
        upstream,
        key_dir,
        writable_tmp,
        LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
        LAYERS_SIDECAR_INTERVAL="200ms",
    )
    security = dataclasses.replace(base.security, read_only=read_only)
    box = dataclasses.replace(base, security=security)
    url = f"http://127.0.0.1:{port}"
    with container.started(st, built.ref, box) as served:  # CMD: serve

        def ready() -> bool:
            if not served.running():
                raise AssertionError(f"serve exited:\n{served.logs()}")
            return http("GET", url + "/readyz", timeout=2).status == 200

        wait_for(ready, timeout=60, what="/readyz 200 from the container")
        wait_for(lambda: upstream.whoami_requests() >= 3, timeout=30, what="three polls")
        metrics = http("GET", url + "/metrics", timeout=5)
        assert metrics.status == 200
        assert "layers_" in metrics.body
        checked = subprocess.run(
            [tool("promtool"), "check", "metrics"],
            input=metrics.body,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert served.stop() == 0, served.logs()  # SIGTERM: a clean shutdown
        assert FAKE_KEY not in served.logs()
        # Even where it could write (a writable root), it wrote nothing outside /tmp: its root
        # layer holds only what the runtime puts there for any program (mount points).
        assert served.diff() == container.runtime_diff(st, built.ref, box)
    # ... and nothing in /tmp either.
    assert list(writable_tmp.iterdir()) == []


# --- a wired pod, run as the kubelet runs it ----------------------------------------------------


def wired_podinfo(tmp: Path, interval: str) -> tuple[Obj, list[Obj]]:
    """podinfo (no securityContext, no fsGroup) wired by the native-sidecar component, with
    LAYERS_SIDECAR_INTERVAL merged into the component's ConfigMap as a user would."""
    objects = wiring.kustomize_wired(
        wiring.ROOT, "native-sidecar", wiring.WORKLOADS / "podinfo.yaml", tmp / "build"
    )
    for obj in objects:
        if obj["kind"] == "ConfigMap":
            obj["data"]["LAYERS_SIDECAR_INTERVAL"] = interval
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return pod_spec(deployment), objects


def hold_then_clear(
    st: Store, built: Built, upstream: Emulator, tmp: Path, spec: Obj, objects: list[Obj]
) -> tuple[float, list[int]]:
    """A kill switch at boot that clears later, for a pod wired in native mode: the gate holds
    the pod without restarts, and it proceeds within one interval (LAYERS_SIDECAR_INTERVAL of
    the gate) of the switch clearing. Returns (seconds from clearing to the gate passing, the
    restart count of each container of ours)."""
    gate_env = container_env(objects, spec["initContainers"][0])
    interval = load({}, gate_env, names=frozenset({"interval"})).interval
    upstream.set(killSwitch=True)
    with kubelet_pod.pod(
        st, built.ref, spec, objects, {"api-key": FAKE_KEY}, upstream.url, tmp
    ) as pod:
        started = threading.Thread(target=pod.start, daemon=True)
        started.start()
        # The gate keeps asking, and is never restarted: one container, still running.
        wait_for(lambda: upstream.whoami_requests() >= 3, timeout=90, what="three answers")
        assert pod.log[0].name == "layers-readiness-check"
        assert pod.log[0].exit_codes == []
        assert pod.running(pod.current)
        assert pod.containers_started_at is None  # the application is held back
        cleared = time.monotonic()
        upstream.set(killSwitch=False)
        started.join(timeout=90)
        assert not started.is_alive()
        gate, sidecar = pod.log
        logs = pod.logs(pod.names[0])
    # The gate passed within one interval of the switch clearing (and a little for the call).
    assert gate.exit_codes == [0]
    assert gate.ready_at is not None
    assert gate.ready_at - cleared < interval + 1.5
    # Restart count 0 everywhere; the native sidecar's startupProbe passed, then the pod's
    # containers started.
    assert [s.restarts for s in pod.log] == [0, 0]
    assert sidecar.name == "layers-readiness-serve"
    assert sidecar.ready_at is not None
    assert pod.containers_started_at is not None
    assert pod.containers_started_at >= sidecar.ready_at >= gate.ready_at
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events][:1] == ["check waiting"]
    assert events[-1]["event"] == "check passed"
    assert FAKE_KEY not in logs
    return gate.ready_at - cleared, [s.restarts for s in pod.log]


def test_a_kill_switch_at_boot_holds_the_pod_without_restarts_until_it_clears(
    st: Store, built: Built, upstream: Emulator, tmp_path: Path
) -> None:
    spec, objects = wired_podinfo(tmp_path, "2s")
    hold_then_clear(st, built, upstream, tmp_path, spec, objects)


def injected_nginx(interval: str) -> tuple[Obj, Obj]:
    """nginx-unprivileged (8080, its own probes and read-only root) with its pod's fsGroup taken
    out, before and after `layers-sidecar inject` as a user runs it (native mode, the interval
    passed on as LAYERS_SIDECAR_INTERVAL)."""
    workload = wiring.load(wiring.WORKLOADS / "nginx-unprivileged.yaml")
    del workload["spec"]["template"]["spec"]["securityContext"]["fsGroup"]
    text = wiring.inject_text(
        "native", stdin=yaml.safe_dump(workload), LAYERS_SIDECAR_INTERVAL=interval
    )
    (wired,) = [d for d in yaml.safe_load_all(text) if d]
    return workload, wired


def test_an_injected_foreign_pod_proceeds_after_a_kill_switch_at_boot_without_restarts(
    st: Store, built: Built, upstream: Emulator, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    before, after = injected_nginx("2s")
    assert kubelet.judge("Deployment", before, after) == []
    spec = pod_spec(after)
    assert "fsGroup" not in spec["securityContext"]
    waited, restarts = hold_then_clear(st, built, upstream, tmp_path, spec, [])
    announce(
        pytestconfig,
        f"nginx-unprivileged wired by inject: the gate passed {waited:.2f} s after the kill "
        f"switch cleared (interval 2 s); restarts {restarts}",
    )


@pytest.mark.parametrize(
    ("mode", "fs_group", "code"), [(0o440, None, 2), (0o440, 65532, 0), (0o444, None, 0)]
)
def test_the_key_is_read_as_the_kubelet_mounts_it(
    st: Store,
    built: Built,
    upstream: Emulator,
    tmp_path: Path,
    mode: int,
    fs_group: int | None,
    code: int,
) -> None:
    """The first rollout's 0440 without an fsGroup: root:root 0440, unreadable by uid 65532
    (exit 2); with the fsGroup, or with the wiring's 0444, the key is read."""
    spec, objects = wired_podinfo(tmp_path, "1s")
    (volume,) = [v for v in spec["volumes"] if v["name"] == "layers-readiness-api-key"]
    volume["secret"]["defaultMode"] = mode
    if fs_group is not None:
        spec["securityContext"] = {"fsGroup": fs_group}
    gate = spec["initContainers"][0]
    with kubelet_pod.pod(
        st, built.ref, spec, objects, {"api-key": FAKE_KEY}, upstream.url, tmp_path
    ) as pod:
        state = pod.run_init(gate, extra_env={"LAYERS_SIDECAR_DEADLINE": "0"})
        logs = pod.logs(pod.current)
    assert state.exit_codes == [code], logs
    if code == 2:
        assert "key_unavailable" in logs
