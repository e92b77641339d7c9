"""The container image, built by buildah and run by podman, with no daemon.

- **Build.** `buildah bud --isolation chroot` builds the repository's `Dockerfile` as it is. The
  base images are the real ones (`debian:12-slim`, `gcr.io/distroless/python3-debian12:nonroot`)
  when they can be pulled. When no registry can be reached, they are stand-ins made from Debian
  packages with `debootstrap --variant=minbase bookworm`: the same Debian 12 and the same
  `/usr/bin/python3` (3.11), passed as the `DEBIAN_IMAGE` / `RUNTIME_IMAGE` build arguments. The
  runtime stand-in has, like distroless, CA certificates, a `nonroot` user 65532 and no shell.
- **Run.** `podman run` with runc (containerd's default OCI runtime) when it is installed, else
  podman's default runtime, as the pod security context of the manifests asks: uid
  65532, read-only root filesystem, all capabilities dropped, no privilege escalation, host
  network so that the container reaches the emulator on 127.0.0.1.
- **Storage.** One containers/storage under `${XDG_CACHE_HOME:-~/.cache}/layers-readiness`, shared
  by buildah and podman. The stand-ins stay there between runs (tagged with a hash of their recipe)
  so that a second run skips `debootstrap`; every built image and container is removed again.
  The driver is `overlay` when the kernel mounts it here (fast), otherwise `vfs` (copies).
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent

REAL_DEBIAN = "docker.io/library/debian:12-slim"
REAL_RUNTIME = "gcr.io/distroless/python3-debian12:nonroot"

DEBIAN_MIRROR = os.environ.get("LAYERS_DEBIAN_MIRROR", "http://deb.debian.org/debian")

# What `debian:12-slim` has and `debootstrap` leaves out: all three suites, in deb822 form.
DEBIAN_SOURCES = """\
Types: deb
URIs: {mirror}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""

# The distroless runtime, approximated with Debian 12's own packages. No shell is left behind:
# the image under test must not need one (its entrypoint is exec'd, never run through `sh -c`).
RUNTIME_RECIPE = """\
ARG DEBIAN_IMAGE
FROM ${DEBIAN_IMAGE}
RUN apt-get update \\
    && apt-get install -y --no-install-recommends python3 ca-certificates \\
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \\
    && echo 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >> /etc/passwd \\
    && echo 'nonroot:x:65532:' >> /etc/group \\
    && mkdir -m 700 /home/nonroot && chown 65532:65532 /home/nonroot \\
    && rm -f /usr/bin/sh /usr/bin/dash /usr/bin/bash /usr/bin/rbash
USER 65532:65532
"""

SHELLS = ("/bin/sh", "/usr/bin/sh", "/bin/bash", "/usr/bin/bash", "/bin/dash", "/usr/bin/dash")

# Bounds on every external step (seconds). debootstrap downloads and unpacks ~90 packages.
PULL_TIMEOUT = 90
DEBOOTSTRAP_TIMEOUT = 600
BUILD_TIMEOUT = 600
RUN_TIMEOUT = 120

# podman's default limits (1048576 open files) are above the hard limits of a runner without
# CAP_SYS_RESOURCE (this one: 20000), where the runtime then fails to start the container.
# Explicit limits far below any runner's hard limit avoid that.
ULIMITS = ("--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "layers-readiness"


def run(
    argv: Sequence[str], *, timeout: float, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """A tool run to completion, bounded; its output is in the error when it fails."""
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout[-4000:]}"
            f"\n{result.stderr[-4000:]}"
        )
    return result


def overlay_works(scratch: Path) -> bool:
    """Whether this kernel and filesystem let us mount overlayfs (root, not in nested overlay)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        lower, upper, work, merged = (Path(tmp) / d for d in ("l", "u", "w", "m"))
        for d in (lower, upper, work, merged):
            d.mkdir()
        options = f"lowerdir={lower},upperdir={upper},workdir={work}"
        mounted = run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
            timeout=10,
            check=False,
        )
        if mounted.returncode != 0:
            return False
        run(["umount", str(merged)], timeout=10)
        return True


@dataclass(frozen=True)
class Store:
    """One containers/storage for buildah and podman, and the OCI runtime podman uses."""

    root: Path
    runroot: Path
    driver: str
    runtime: str | None  # None: podman's default

    def storage(self) -> list[str]:
        return [
            *("--root", str(self.root), "--runroot", str(self.runroot)),
            *("--storage-driver", self.driver),
        ]

    def buildah(self, *args: str) -> list[str]:
        return ["buildah", *self.storage(), *args]

    def podman(self, *args: str) -> list[str]:
        runtime = ["--runtime", self.runtime] if self.runtime else []
        return ["podman", *self.storage(), *runtime, "--events-backend", "none", *args]


def store() -> Store:
    cache = cache_dir()
    driver = os.environ.get("LAYERS_IMAGE_STORAGE_DRIVER") or (
        "overlay" if overlay_works(cache / "probe") else "vfs"
    )
    # A storage root is tied to its driver; the run root is per-boot state, so under /tmp.
    runroot = Path(tempfile.gettempdir()) / f"layers-readiness-{os.geteuid()}" / driver
    tool("buildah")
    tool("podman")
    # runc rather than crun where both exist: Debian 12's crun refuses the hybrid cgroup v1/v2
    # layout some runners have ("cgroups in hybrid mode not supported"); runc handles both.
    return Store(cache / "containers" / driver, runroot, driver, shutil.which("runc"))


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """One stand-in maker at a time across concurrent test runs on this machine."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_exists(st: Store, ref: str) -> bool:
    return (
        run(st.buildah("inspect", "--type", "image", ref), timeout=60, check=False).returncode == 0
    )


def recipe_tag() -> str:
    text = DEBIAN_SOURCES + RUNTIME_RECIPE + DEBIAN_MIRROR
    return "12-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def debootstrap_image(st: Store, ref: str, work: Path) -> None:
    """`debootstrap --variant=minbase bookworm`, trimmed like debian:12-slim, committed as `ref`."""
    rootfs = work / "rootfs"
    run(
        [tool("debootstrap"), "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR],
        timeout=DEBOOTSTRAP_TIMEOUT,
    )
    for leftover in ("var/lib/apt/lists", "var/cache/apt", "dev"):
        for entry in (rootfs / leftover).iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
        DEBIAN_SOURCES.format(mirror=DEBIAN_MIRROR)
    )
    container = run(st.buildah("from", "scratch"), timeout=60).stdout.strip()
    try:
        mountpoint = run(st.buildah("mount", container), timeout=60).stdout.strip()
        run(["cp", "-a", f"{rootfs}/.", mountpoint], timeout=300)
        run(st.buildah("umount", container), timeout=60)
        run(
            st.buildah(
                "config",
                "--env",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--cmd",
                '["bash"]',
                container,
            ),
            timeout=60,
        )
        run(st.buildah("commit", "--quiet", container, ref), timeout=300)
    finally:
        run(st.buildah("rm", container), timeout=60, check=False)


def standins(st: Store) -> tuple[str, str]:
    """The Debian-made base images, made once per recipe and kept in the store."""
    tag = recipe_tag()
    debian = f"localhost/layers-readiness-standin/debian:{tag}"
    runtime = f"localhost/layers-readiness-standin/python3-debian12:{tag}"
    with locked(cache_dir() / "standins.lock"):
        if not image_exists(st, debian):
            with tempfile.TemporaryDirectory(dir=cache_dir()) as work:
                debootstrap_image(st, debian, Path(work))
        if not image_exists(st, runtime):
            with tempfile.TemporaryDirectory() as work:
                recipe = Path(work) / "Containerfile"
                recipe.write_text(RUNTIME_RECIPE)
                run(
                    st.buildah(
                        "bud",
                        "--isolation",
                        "chroot",
                        "--pull=never",
                        "--quiet",
                        "--build-arg",
                        f"DEBIAN_IMAGE={debian}",
                        "--tag",
                        runtime,
                        "--file",
                        str(recipe),
                        work,
                    ),
                    timeout=BUILD_TIMEOUT,
                )
    return debian, runtime


@dataclass(frozen=True)
class Bases:
    debian: str
    runtime: str
    real: bool
    why: str

    def describe(self) -> str:
        kind = "real base images" if self.real else "Debian-made stand-in base images"
        return f"{kind}: DEBIAN_IMAGE={self.debian} RUNTIME_IMAGE={self.runtime} ({self.why})"


def bases(st: Store) -> Bases:
    """The real base images when both can be pulled, else the stand-ins for both."""
    for ref in (REAL_DEBIAN, REAL_RUNTIME):
        pull = st.buildah("pull", "--quiet", "--retry", "0", ref)
        try:
            pulled = run(pull, timeout=PULL_TIMEOUT, check=False)
            failed = pulled.returncode != 0
            why = (pulled.stderr.strip().splitlines() or ["no output"])[-1][-300:]
        except subprocess.TimeoutExpired:
            failed, why = True, f"no answer in {PULL_TIMEOUT} s"
        if failed:
            debian, runtime = standins(st)
            return Bases(debian, runtime, False, f"cannot pull {ref}: {why}")
    return Bases(REAL_DEBIAN, REAL_RUNTIME, True, "pulled")


@dataclass(frozen=True)
class Built:
    ref: str
    bases: Bases
    build_args: dict[str, str]
    seconds: float
    size: int  # bytes, unpacked
    base_size: int  # bytes, unpacked, of the runtime base
    pulled_size: int  # bytes of the gzip-compressed layers: what a node downloads


def image_size(st: Store, ref: str) -> int:
    out = run(st.podman("image", "inspect", "--format", "{{.Size}}", ref), timeout=60).stdout
    return int(out.strip())


def compressed_size(st: Store, ref: str) -> int:
    """The sum of the image's layers as a registry stores them (gzip), via an OCI layout."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "oci"
        run(st.buildah("push", "--quiet", ref, f"oci:{layout}"), timeout=300)
        index = json.loads((layout / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
        return sum(int(layer["size"]) for layer in manifest["layers"])


def build(
    st: Store, base: Bases, *, ref: str, build_args: dict[str, str], ca_bundle: Path | None
) -> Built:
    """The repository's Dockerfile built into `ref`, the CA bundle (if any) as the `ca` secret."""
    args = ["bud", "--isolation", "chroot", "--pull=never", "--tag", ref]
    build_args = {"DEBIAN_IMAGE": base.debian, "RUNTIME_IMAGE": base.runtime, **build_args}
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if ca_bundle is not None:
        args += ["--secret", f"id=ca,src={ca_bundle}"]
    started = time.monotonic()
    run(st.buildah(*args, "--file", str(ROOT / "Dockerfile"), str(ROOT)), timeout=BUILD_TIMEOUT)
    seconds = time.monotonic() - started
    return Built(
        ref=ref,
        bases=base,
        build_args=build_args,
        seconds=seconds,
        size=image_size(st, ref),
        base_size=image_size(st, base.runtime),
        pulled_size=compressed_size(st, ref),
    )


def remove_image(st: Store, ref: str) -> None:
    run(st.buildah("rmi", "--force", ref), timeout=120, check=False)


def config(st: Store, ref: str) -> dict[str, object]:
    """The image's OCI config (`config` of the image config blob: User, Labels, Entrypoint...)."""
    out = run(st.buildah("inspect", "--type", "image", ref), timeout=60).stdout
    oci: dict[str, object] = json.loads(out)["OCIv1"]
    return oci


@contextmanager
def mounted(st: Store, ref: str) -> Iterator[Path]:
    """The image's root filesystem, read through a throw-away working container."""
    container = run(st.buildah("from", "--pull=never", ref), timeout=120).stdout.strip()
    try:
        yield Path(run(st.buildah("mount", container), timeout=60).stdout.strip())
    finally:
        run(st.buildah("umount", container), timeout=60, check=False)
        run(st.buildah("rm", container), timeout=60, check=False)


@dataclass(frozen=True)
class Sandbox:
    """How the container runs: the restricted security context of the manifests, by default."""

    user: str = "65532:65532"
    read_only: bool = True
    tmp: Path | None = None  # bind-mounted read-write at /tmp: the only writable place
    key_dir: Path | None = None  # bind-mounted read-only where the manifests mount the Secret
    env: dict[str, str] = field(default_factory=dict)
    entrypoint: str | None = None

    def flags(self) -> list[str]:
        flags = [
            "--pull=never",
            "--network=host",
            f"--user={self.user}",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
            *ULIMITS,
        ]
        if self.read_only:
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
KEY_DIR = "/var/run/secrets/layers"
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
