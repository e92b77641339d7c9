"""A wired pod started by podman the way the kubelet starts it, for the image tests.

What is reproduced, as the kubelet documents it:
- the Secret volume: a directory holding the Secret's data in a timestamped `..<ts>` directory,
  a `..data` symlink to it and, per key, a symlink `<key> -> ..data/<key>` (the kubelet's
  AtomicWriter layout, which is how a rotation swaps every file at once). Files and directories
  are owned by root:root; when the pod sets `fsGroup` their group is the fsGroup and group read is
  added (the volume is read-only). File mode: the volume's `defaultMode` (0644 when unset);
- each container's user from its securityContext over the pod's, and the pod's fsGroup and
  supplementalGroups as supplemental groups of every container;
- init containers one after the other, in order: an ordinary one must exit 0 before the next
  starts (a non-zero exit is a restart, counted); a native sidecar (`restartPolicy: Always`) is
  started and its startupProbe called every periodSeconds until it passes, and the next
  container waits for that (failureThreshold failures in a row: a restart, counted);
- then the pod's containers start: here that moment is recorded (the application's own image is
  not run).

Substituted, as in tests/test_manifests_run.py: the API URL (the emulator), the listen address
(127.0.0.1 and a free port, on the host network). Everything else runs as written.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.container import ULIMITS, Security
from tests.image import Store, run
from tests.k8s import container_env, resolve_port
from tests.support import free_port, http

Obj = dict[str, Any]

DEFAULT_MODE = 0o644


def materialise_secret(directory: Path, data: dict[str, str], volume: Obj, pod: Obj) -> None:
    """`directory` laid out as the kubelet lays out a Secret volume."""
    secret = volume["secret"]
    mode = secret.get("defaultMode", DEFAULT_MODE)
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    group = 0 if fs_group is None else fs_group
    if fs_group is not None:
        mode |= 0o440
    stamp = directory / time.strftime("..%Y_%m_%d_%H_%M_%S.000000001")
    stamp.mkdir(parents=True)
    for key, value in data.items():
        (stamp / key).write_text(value)
        os.chown(stamp / key, 0, group)
        (stamp / key).chmod(mode)
    (directory / "..data").symlink_to(stamp.name)
    for key in data:
        (directory / key).symlink_to(f"..data/{key}")
    for path in (directory, stamp):
        os.chown(path, 0, group)
        path.chmod(0o755 if fs_group is None else 0o2755)


@dataclass
class Started:
    """What happened to one container of the pod."""

    name: str
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    ready_at: float | None = None  # exited 0, or (native) its startupProbe passed


@dataclass
class Pod:
    st: Store
    ref: str  # the image under test, for every container of ours
    spec: Obj  # the pod spec, as wired
    objects: list[Obj]  # what it was built with (ConfigMaps for envFrom)
    secret_dir: Path
    api_url: str
    names: list[str] = field(default_factory=list)  # podman containers to remove
    log: list[Started] = field(default_factory=list)
    containers_started_at: float | None = None
    current: str = ""  # the podman name of the init container running now

    def _volume_flags(self, c: Obj) -> list[str]:
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        flags = []
        for mount in c.get("volumeMounts", []):
            assert "secret" in volumes[mount["name"]], mount
            ro = ",ro=true" if mount.get("readOnly") else ""
            flags += ["--mount", f"type=bind,src={self.secret_dir},dst={mount['mountPath']}{ro}"]
        return flags

    def _flags(self, c: Obj, env: dict[str, str]) -> list[str]:
        security = Security.of(self.spec, c)
        pod_context = self.spec.get("securityContext") or {}
        groups = list(pod_context.get("supplementalGroups") or [])
        if "fsGroup" in pod_context:
            groups.append(pod_context["fsGroup"])
        flags = ["--pull=never", "--network=host", f"--user={security.user}", *ULIMITS]
        flags += [f"--group-add={g}" for g in groups]
        flags += [f"--cap-drop={cap}" for cap in security.cap_drop]
        if security.no_new_privileges:
            flags += ["--security-opt=no-new-privileges"]
        if security.read_only:
            flags += ["--read-only", "--read-only-tmpfs=false"]
        flags += self._volume_flags(c)
        for key, value in env.items():
            flags += ["--env", f"{key}={value}"]
        return flags

    def _env(
        self, c: Obj, extra: dict[str, str] | None = None
    ) -> tuple[dict[str, str], int | None]:
        env = {**container_env(self.objects, c), **(extra or {})}
        assert env["LAYERS_API_URL"] == "https://api.layers.com"
        env["LAYERS_API_URL"] = self.api_url
        port = None
        if "LAYERS_SIDECAR_LISTEN" in env:
            port = free_port()
            env["LAYERS_SIDECAR_LISTEN"] = f"127.0.0.1:{port}"
        return env, port

    def _start(self, c: Obj, env: dict[str, str]) -> str:
        name = f"layers-readiness-pod-{os.getpid()}-{time.monotonic_ns()}"
        self.names.append(name)
        argv = [*(c.get("command") or []), *(c.get("args") or [])]
        assert not c.get("command"), "the image's entrypoint is the program"
        run(
            self.st.podman(
                "run", "--detach", "--name", name, *self._flags(c, env), self.ref, *argv
            ),
            timeout=120,
        )
        return name

    def _exit_code(self, name: str, timeout: float) -> int:
        done = run(self.st.podman("wait", name), timeout=timeout)
        return int(done.stdout.strip())

    def running(self, name: str) -> bool:
        out = run(
            self.st.podman("inspect", "--format", "{{.State.Running}}", name), timeout=60
        ).stdout
        return out.strip() == "true"

    def logs(self, name: str) -> str:
        done = run(self.st.podman("logs", name), timeout=60, check=False)
        return done.stdout + done.stderr

    def run_init(
        self,
        c: Obj,
        *,
        restarts_allowed: int = 0,
        timeout: float = 120,
        extra_env: dict[str, str] | None = None,
    ) -> Started:
        """An ordinary init container, to completion; each non-zero exit is a restart."""
        state = Started(c["name"])
        self.log.append(state)
        env, _ = self._env(c, extra_env)
        while True:
            self.current = self._start(c, env)
            code = self._exit_code(self.current, timeout)
            state.exit_codes.append(code)
            if code == 0:
                state.ready_at = time.monotonic()
                return state
            state.restarts += 1
            if state.restarts > restarts_allowed:
                return state

    def run_native(self, c: Obj) -> Started:
        """A native sidecar: started, then its startupProbe until it passes."""
        state = Started(c["name"])
        self.log.append(state)
        env, port = self._env(c)
        assert port is not None
        probe = c["startupProbe"]
        target = resolve_port(c, probe["httpGet"]["port"])
        assert env_port(container_env(self.objects, c)) == target
        name = self._start(c, env)
        url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
        period = probe.get("periodSeconds", 10)
        failures = 0
        time.sleep(probe.get("initialDelaySeconds", 0))
        while failures < probe.get("failureThreshold", 3):
            try:
                status = http("GET", url, timeout=probe.get("timeoutSeconds", 1)).status
            except OSError:
                status = 0
            if 200 <= status < 400:
                state.ready_at = time.monotonic()
                return state
            failures += 1
            time.sleep(period)
        state.restarts += 1  # the kubelet would kill and restart it here
        raise AssertionError(f"{c['name']} failed its startupProbe:\n{self.logs(name)}")

    def start(self) -> None:
        """Init containers in order, then the pod's containers."""
        for c in self.spec.get("initContainers", []):
            if c.get("restartPolicy") == "Always":
                self.run_native(c)
            else:
                state = self.run_init(c)
                assert state.exit_codes[-1] == 0, (c["name"], state, self.logs(self.current))
        self.containers_started_at = time.monotonic()

    def remove(self) -> None:
        for name in self.names:
            run(self.st.podman("rm", "--force", "--time", "0", name), timeout=60, check=False)


def env_port(env: dict[str, str]) -> int:
    return int(env["LAYERS_SIDECAR_LISTEN"].rsplit(":", 1)[1])


@contextmanager
def pod(
    st: Store,
    ref: str,
    spec: Obj,
    objects: list[Obj],
    secret: dict[str, str],
    api_url: str,
    tmp: Path,
) -> Iterator[Pod]:
    """A pod of `spec`, its Secret volume materialised under `tmp`; containers removed after."""
    (volume,) = [v for v in spec.get("volumes", []) if "secret" in v]
    secret_dir = tmp / "secret-volume"
    materialise_secret(secret_dir, secret, volume, spec)
    running = Pod(st, ref, spec, objects, secret_dir, api_url)
    try:
        yield running
    finally:
        running.remove()
