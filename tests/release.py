"""What `make release` writes to dist/, and how: one version, one home setting, one name per file.

The version is `sidecar.__version__` (pyproject.toml reads it too). The project's public home is
the one setting `[tool.layers-readiness] home` in pyproject.toml, empty while there is none: the
chart's `home`/`sources`, the image's `org.opencontainers.image.source` label and the image
repository all follow from it (`localhost/layers-readiness` without a home; `ghcr.io/OWN/NAME`
for a `https://github.com/OWN/NAME` home).

This lives beside tests/image.py on purpose: the release builds the image with the same recipe
(buildah, real or Debian-made base images) that the image tests build and run, and the release
tests read these same names back. `scripts/release` is the command; this module is its parts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from sidecar import __version__

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
CHART_DIR = ROOT / "helm" / "layers-readiness"
NAME = "layers-readiness"
LOCAL_IMAGE = f"localhost/{NAME}"

# Bounds on each external step (seconds).
STEP_TIMEOUT = 600


@dataclass(frozen=True)
class Settings:
    version: str
    home: str  # "" while the project has no public home

    @property
    def image(self) -> str:
        """The image repository (no tag) the release names its image and the docs use."""
        found = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+?)/?", self.home)
        if found:
            return f"ghcr.io/{found[1].lower()}/{found[2].lower()}"
        return LOCAL_IMAGE

    def source(self, sdist: str) -> str:
        """The image's source label: the home, else the source distribution beside it."""
        return self.home or sdist


def settings(root: Path = ROOT) -> Settings:
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    home = str(pyproject.get("tool", {}).get(NAME, {}).get("home", ""))
    if home and not home.startswith("https://"):
        raise SystemExit(f"[tool.{NAME}] home must be an https:// URL or empty, not {home!r}")
    return Settings(version=__version__, home=home.rstrip("/"))


@dataclass(frozen=True)
class Artifacts:
    """The file names in dist/ for one version."""

    version: str

    @property
    def sdist(self) -> str:
        return f"layers_readiness-{self.version}.tar.gz"

    @property
    def wheel(self) -> str:
        return f"layers_readiness-{self.version}-py3-none-any.whl"

    @property
    def chart(self) -> str:
        return f"{NAME}-{self.version}.tgz"

    @property
    def image(self) -> str:
        return f"{NAME}-{self.version}.oci.tar"

    @property
    def sbom(self) -> str:
        return f"{NAME}-{self.version}.cdx.json"

    def all(self) -> list[str]:
        return [self.sdist, self.wheel, self.chart, self.image, self.sbom]


SUMS = "SHA256SUMS"


def run(argv: list[str], *, cwd: Path = ROOT, timeout: float = STEP_TIMEOUT) -> str:
    """A step run to completion; its output is in the error when it fails."""
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-4000:]}\n"
            f"{done.stderr[-4000:]}"
        )
    return done.stdout


def venv_tool(name: str) -> str:
    """A command the test extra installs beside this interpreter (twine, cyclonedx-py...)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"{name} is missing: pip install -e '.[test]'")
    return str(path)


def git_revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else "0" * 40


def git_dirty() -> bool:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return bool(done.stdout.strip())


def python_packages(dist: Path) -> None:
    """The sdist and the wheel, built in isolation as any installer would build them."""
    run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(ROOT)])


def chart_package(cfg: Settings, dist: Path) -> Path:
    """The chart as a .tgz whose version and appVersion are the release's version.

    The copy that is packaged gets `home`/`sources` and the image repository from the setting;
    the repository's own chart keeps none (no public home to name).
    """
    import helm_python

    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / NAME
        shutil.copytree(CHART_DIR, chart)
        metadata_path = chart / "Chart.yaml"
        metadata = yaml.safe_load(metadata_path.read_text(encoding="utf-8"))
        if cfg.home:
            metadata["home"] = cfg.home
            metadata["sources"] = [cfg.home]
            metadata_path.write_text(yaml.safe_dump(metadata, sort_keys=False), encoding="utf-8")
        registry, _, repository = cfg.image.partition("/")
        values_path = chart / "values.yaml"
        values = values_path.read_text(encoding="utf-8")
        # A text edit, not a YAML round trip: the values' comments are the chart's documentation.
        values, n = re.subn(
            r"(?m)^(image:\n  registry: ).*\n(  repository: ).*$",
            rf"\g<1>{registry}\n\g<2>{repository}",
            values,
        )
        if n != 1:
            raise SystemExit("values.yaml: image.registry/image.repository not found as expected")
        values_path.write_text(values, encoding="utf-8")
        path: str = helm_python.package(
            chart, destination=dist, version=cfg.version, app_version=cfg.version
        )
    return Path(path)


def chart_lint(chart: Path) -> list[str]:
    """`helm lint --strict` through the embedded Helm engine: what fails it (empty: it passed)."""
    import helm_python

    report = helm_python.lint(chart, strict=True)
    # Strict: a warning (severity 2) fails as an error (3) does; info (1) never does.
    failing = [
        f"{m['path']}: {m['error']}" for m in report.get("messages", []) if int(m["severity"]) >= 2
    ]
    return [*report.get("errors", []), *failing]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_sums(dist: Path, names: Iterable[str]) -> Path:
    """SHA256SUMS in `sha256sum` format, so `sha256sum -c SHA256SUMS` checks the release."""
    lines = [f"{sha256(dist / name)}  {name}\n" for name in sorted(names)]
    path = dist / SUMS
    path.write_text("".join(lines), encoding="utf-8")
    return path


def read_sums(dist: Path) -> dict[str, str]:
    sums = {}
    for line in (dist / SUMS).read_text(encoding="utf-8").splitlines():
        digest, _, name = line.partition("  ")
        sums[name] = digest
    return sums


def ca_bundle() -> Path | None:
    """This machine's CA bundle, for pip behind a TLS-intercepting proxy (never in the image)."""
    path = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    return path if path.is_file() else None
