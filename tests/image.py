"""The container image, built by buildah with no daemon, and the storage podman runs it from.

- **Build.** `buildah bud --isolation chroot` builds the repository's `Dockerfile` as it is. The
  base images are the real ones (`debian:12-slim`, `gcr.io/distroless/python3-debian12:nonroot`)
  when they can be pulled. When no registry can be reached, they are stand-ins made from Debian
  packages with `debootstrap --variant=minbase bookworm`: the same Debian 12 and the same
  `/usr/bin/python3` (3.11), passed as the `DEBIAN_IMAGE` / `RUNTIME_IMAGE` build arguments. The
  runtime stand-in has, like distroless, CA certificates, a `nonroot` user 65532 and no shell.
- **Run.** `tests/container.py` runs the image with podman, in this same storage.
- **Storage.** One containers/storage under `${XDG_CACHE_HOME:-~/.cache}/layers-readiness`, shared
  by buildah and podman. The stand-ins stay there between runs (tagged with a hash of their recipe)
  so that a second run skips `debootstrap`; every built image and container is removed again.
  The driver is `overlay` when the kernel mounts it here (fast), otherwise `vfs` (copies).
"""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    # A storage root is tied to its driver, and to one run root (mount state and locks, per
    # boot): podman records the pair and refuses another. So the run root is a function of the
    # storage root alone, under /run as podman's own default is (not under $TMPDIR, which varies).
    root = cache / "storage" / driver
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    # (Rootless podman's own default is $XDG_RUNTIME_DIR.)
    user_run = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    run_dir = Path("/run") if os.geteuid() == 0 else Path(user_run)
    runroot = run_dir / f"layers-readiness-{digest}"
    tool("buildah")
    tool("podman")
    # runc rather than crun where both exist: Debian 12's crun refuses the hybrid cgroup v1/v2
    # layout some runners have ("cgroups in hybrid mode not supported"); runc handles both.
    return Store(root, runroot, driver, shutil.which("runc"))


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
    own_pulled_size: int  # ... of the layers over the runtime base: what an upgrade downloads


def image_size(st: Store, ref: str) -> int:
    out = run(st.podman("image", "inspect", "--format", "{{.Size}}", ref), timeout=60).stdout
    return int(out.strip())


def compressed_layers(st: Store, ref: str) -> list[int]:
    """The sizes of the image's layers as a registry stores them (gzip), via an OCI layout."""
    with tempfile.TemporaryDirectory() as tmp:
        layout = Path(tmp) / "oci"
        run(st.buildah("push", "--quiet", ref, f"oci:{layout}"), timeout=300)
        index = json.loads((layout / "index.json").read_text())
        digest = index["manifests"][0]["digest"].split(":", 1)[1]
        manifest = json.loads((layout / "blobs" / "sha256" / digest).read_text())
        return [int(layer["size"]) for layer in manifest["layers"]]


def bud(
    st: Store, base: Bases, *, ref: str, build_args: dict[str, str], ca_bundle: Path | None
) -> dict[str, str]:
    """The repository's Dockerfile built into `ref`, the CA bundle (if any) as the `ca` secret.

    The build arguments used, the base images included, are returned. `make release` builds
    with this too, so the released image is the one the image tests build and run.
    """
    args = ["bud", "--isolation", "chroot", "--pull=never", "--tag", ref]
    build_args = {"DEBIAN_IMAGE": base.debian, "RUNTIME_IMAGE": base.runtime, **build_args}
    for key, value in build_args.items():
        args += ["--build-arg", f"{key}={value}"]
    if ca_bundle is not None:
        args += ["--secret", f"id=ca,src={ca_bundle}"]
    run(st.buildah(*args, "--file", str(ROOT / "Dockerfile"), str(ROOT)), timeout=BUILD_TIMEOUT)
    return build_args


def build(
    st: Store, base: Bases, *, ref: str, build_args: dict[str, str], ca_bundle: Path | None
) -> Built:
    """`bud`, measured: build time, unpacked and compressed sizes."""
    started = time.monotonic()
    build_args = bud(st, base, ref=ref, build_args=build_args, ca_bundle=ca_bundle)
    seconds = time.monotonic() - started
    layers, base_layers = compressed_layers(st, ref), compressed_layers(st, base.runtime)
    return Built(
        ref=ref,
        bases=base,
        build_args=build_args,
        seconds=seconds,
        size=image_size(st, ref),
        base_size=image_size(st, base.runtime),
        pulled_size=sum(layers),
        own_pulled_size=sum(layers[len(base_layers) :]),
    )


def remove_image(st: Store, ref: str) -> None:
    run(st.buildah("rmi", "--force", ref), timeout=120, check=False)


def config(st: Store, ref: str) -> dict[str, Any]:
    """The image's OCI config blob: `config` (User, Labels, Entrypoint...), `history`, `rootfs`."""
    out = run(st.buildah("inspect", "--type", "image", ref), timeout=60).stdout
    oci: dict[str, Any] = json.loads(out)["OCIv1"]
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
