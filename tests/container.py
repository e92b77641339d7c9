"""The built image run by podman, as a pod's security context asks.

`podman run` uses runc (containerd's default OCI runtime) when it is installed, else podman's
default runtime. The container gets the manifests' security context (`Security.of` reads it from
a pod spec): uid 65532, read-only root filesystem, all capabilities dropped, no privilege
escalation, the default seccomp profile. It shares the host network so that it reaches the
emulator on 127.0.0.1. Every container is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.image import Store, run

RUN_TIMEOUT = 120

# podman's default limits (1048576 open files) are above the hard limits of a runner without
# CAP_SYS_RESOURCE (this one: 20000), where the runtime then fails to start the container.
# Explicit limits far below any runner's hard limit avoid that.
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


@dataclass(frozen=True)
class Security:
    """A Kubernetes security context as an OCI runtime applies it."""

    user: str  # uid:gid
    read_only: bool
    cap_drop: tuple[str, ...]
    no_new_privileges: bool

    @classmethod
    def of(cls, pod: dict[str, Any], container: dict[str, Any]) -> Security:
        """The effective context of `container` in a pod spec: its own fields over the pod's.

        Only what this image's manifests use is understood; anything else fails, so a new field
        in the manifests cannot silently go untested here.
        """
        pod_context = pod.get("securityContext") or {}
        own = container.get("securityContext") or {}
        known_pod = {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup", "seccompProfile"}
        known_own = known_pod - {"fsGroup"} | {
            "readOnlyRootFilesystem",
            "allowPrivilegeEscalation",
            "capabilities",
        }
        assert set(pod_context) <= known_pod, sorted(set(pod_context) - known_pod)
        assert set(own) <= known_own, sorted(set(own) - known_own)
        merged = {**pod_context, **own}
        # podman's default seccomp profile is what the kubelet's RuntimeDefault asks for.
        assert merged.get("seccompProfile", {}).get("type") == "RuntimeDefault", merged
        uid, gid = merged["runAsUser"], merged["runAsGroup"]
        if merged.get("runAsNonRoot"):
            assert uid != 0, "runAsNonRoot with uid 0 would not start"
        capabilities = merged.get("capabilities") or {}
        assert not capabilities.get("add"), capabilities
        return cls(
            user=f"{uid}:{gid}",
            read_only=merged.get("readOnlyRootFilesystem") is True,
            cap_drop=tuple(capabilities.get("drop") or ()),
            no_new_privileges=merged.get("allowPrivilegeEscalation") is False,
        )


# What the chart and deploy/ ask for (tests/test_image.py checks they still do).
RESTRICTED = Security(user="65532:65532", read_only=True, cap_drop=("ALL",), no_new_privileges=True)


@dataclass(frozen=True)
class Sandbox:
    """How the container runs: a security context, mounts, environment."""

    security: Security = RESTRICTED
    tmp: Path | None = None  # bind-mounted read-write at /tmp: the only writable place
    key_dir: Path | None = None  # bind-mounted read-only where the manifests mount the Secret
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: str | None = None

    def flags(self) -> list[str]:
        security = self.security
        flags = ["--pull=never", "--network=host", f"--user={security.user}", *ULIMITS]
        flags += [f"--cap-drop={cap}" for cap in security.cap_drop]
        if security.no_new_privileges:
            flags += ["--security-opt=no-new-privileges"]
        if security.read_only:
            # podman would otherwise mount its own tmpfs on /tmp, /run and /var/tmp.
            flags += ["--read-only", "--read-only-tmpfs=false"]
        if self.tmp is not None:
            flags += ["--mount", f"type=bind,src={self.tmp},dst=/tmp"]
        if self.key_dir is not None:
            flags += ["--mount", f"type=bind,src={self.key_dir},dst={KEY_DIR},ro=true"]
        for key, value in self.env.items():
            flags += ["--env", f"{key}={value}"]
        if self.entrypoint is not None:
            flags += ["--entrypoint", json.dumps([self.entrypoint])]
        return flags


# Where the manifests mount the key Secret, and the file the program reads.
KEY_DIR = "/etc/layers-readiness"
KEY_FILE = f"{KEY_DIR}/api-key"


def run_once(
    st: Store, ref: str, sandbox: Sandbox, *args: str, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """`podman run --rm` to completion: the exit code is the program's."""
    return run(st.podman("run", "--rm", *sandbox.flags(), ref, *args), timeout=timeout, check=False)


@dataclass
class Container:
    st: Store
    name: str

    def logs(self) -> str:
        done = run(self.st.podman("logs", self.name), timeout=60, check=False)
        return done.stdout + done.stderr

    def running(self) -> bool:
        out = run(
            self.st.podman("inspect", "--format", "{{.State.Running}}", self.name),
            timeout=60,
            check=False,
        ).stdout
        return out.strip() == "true"

    def stop(self, grace: int = 10) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; the exit code."""
        run(self.st.podman("stop", "--time", str(grace), self.name), timeout=grace + 60)
        out = run(
            self.st.podman("inspect", "--format", "{{.State.ExitCode}}", self.name), timeout=60
        ).stdout
        return int(out.strip())

    def diff(self) -> list[str]:
        """What the container changed in its own root filesystem layer (`C /x`, `A /y`)."""
        out = run(self.st.podman("diff", self.name), timeout=60).stdout
        return sorted(line for line in out.splitlines() if line.strip())  # podman's order varies


def runtime_diff(st: Store, ref: str, sandbox: Sandbox) -> list[str]:
    """What the runtime itself changes in a container's root layer before the program runs:
    mount points for the bind mounts, `/etc/hosts` and the like. A Python that does nothing."""
    idle = dataclasses.replace(sandbox, entrypoint="/usr/bin/python3")
    name = f"layers-readiness-test-{os.getpid()}-{time.monotonic_ns()}"
    try:
        run(st.podman("run", "--name", name, *idle.flags(), ref, "-c", "pass"), timeout=RUN_TIMEOUT)
        return Container(st, name).diff()
    finally:
        run(st.podman("rm", "--force", "--time", "0", name), timeout=60, check=False)


@contextmanager
def started(st: Store, ref: str, sandbox: Sandbox, *args: str) -> Iterator[Container]:
    """`podman run --detach`; the container is removed afterwards whatever happens."""
    name = f"layers-readiness-test-{os.getpid()}-{time.monotonic_ns()}"
    run(st.podman("run", "--detach", "--name", name, *sandbox.flags(), ref, *args), timeout=120)
    try:
        yield Container(st, name)
    finally:
        run(st.podman("rm", "--force", "--time", "0", name), timeout=60, check=False)
