"""What `make release` wrote to dist/, read back by each tool that consumes it.

- sdist and wheel: `twine check --strict`, `check-wheel-contents`, and a fresh venv that installs
  only the wheel (and its dependencies) runs `layers-sidecar --version`;
- the chart: loaded from the .tgz by Helm's engine, version/appVersion, rendered from the package,
  `helm lint --strict` (helm-python-sdk's embedded lint);
- the image archive: `skopeo inspect` reads the version, revision and source labels; podman runs
  the image loaded from the archive;
- the SBOM: valid against the CycloneDX 1.6 schema (cyclonedx-python-lib), and lists exactly the
  Python distributions the image from the archive reports;
- SHA256SUMS: `sha256sum -c`.

These tests never build: `make release` does (`make test` runs it first). A missing or
outdated dist/ fails with the command that makes it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.utils import canonicalize_name

from sidecar import __version__
from tests import container, image, release
from tests.image import Store
from tests.tools import tool

pytestmark = pytest.mark.release

TIMEOUT = 300


@pytest.fixture(scope="module")
def names() -> release.Artifacts:
    return release.Artifacts(__version__)


@pytest.fixture(scope="module")
def dist(names: release.Artifacts) -> Path:
    sums = release.DIST / release.SUMS
    if not sums.is_file():
        pytest.fail(f"no {sums}: run `make release` first", pytrace=False)
    listed = sorted(release.read_sums(release.DIST))
    if listed != sorted(names.all()):
        pytest.fail(
            f"dist/ holds {listed}, not the release of {__version__} ({sorted(names.all())}): "
            "run `make release`",
            pytrace=False,
        )
    return release.DIST


def run(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


# --- SHA256SUMS ---------------------------------------------------------------------------------


def test_sha256sums_check_every_artifact(dist: Path, names: release.Artifacts) -> None:
    checked = run(["sha256sum", "--check", "--strict", release.SUMS], cwd=dist)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert sorted(re.findall(r"^(\S+): OK$", checked.stdout, re.MULTILINE)) == sorted(names.all())


# --- sdist and wheel ----------------------------------------------------------------------------


def test_twine_check_strict_accepts_both_distributions(
    dist: Path, names: release.Artifacts
) -> None:
    checked = run(
        [release.venv_tool("twine"), "check", "--strict", names.sdist, names.wheel], cwd=dist
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("PASSED") == 2, checked.stdout


def test_check_wheel_contents_accepts_the_wheel(dist: Path, names: release.Artifacts) -> None:
    checked = run([release.venv_tool("check-wheel-contents"), names.wheel], cwd=dist)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{names.wheel}: OK" in checked.stdout


def test_a_fresh_venv_with_only_the_wheel_runs_the_command(
    dist: Path, names: release.Artifacts, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    # No source tree on the path: the wheel and the dependencies it declares, nothing else.
    installed = run(
        [str(venv / "bin/pip"), "install", "--quiet", str(dist / names.wheel)], cwd=tmp_path
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    version = run([str(venv / "bin/layers-sidecar"), "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split() == ["layers-sidecar", __version__]
    where = run(
        [str(venv / "bin/python"), "-c", "import sidecar; print(sidecar.__file__)"], cwd=tmp_path
    )
    assert where.stdout.strip().startswith(str(venv)), where.stdout


# --- the chart ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chart_bytes(dist: Path, names: release.Artifacts) -> bytes:
    return (dist / names.chart).read_bytes()


def test_the_chart_package_carries_the_release_version(chart_bytes: bytes) -> None:
    import helm_python

    with helm_python.Chart.load_archive(chart_bytes) as chart:
        metadata = chart.metadata
    assert metadata["version"] == __version__
    assert metadata["appVersion"] == __version__
    cfg = release.settings()
    assert metadata.get("home", "") == cfg.home


def test_the_chart_package_renders_the_released_image(chart_bytes: bytes) -> None:
    import helm_python

    values = {"prometheusRule": {"enabled": True}, "podMonitor": {"enabled": True}}
    with helm_python.Chart.load_archive(chart_bytes) as chart:
        rendered: dict[str, str] = chart.render(values, name="shop", namespace="apps")
    objects = [
        doc
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]
    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "PrometheusRule", "PodMonitor"} <= kinds, kinds
    images = {
        c["image"]
        for o in objects
        if o["kind"] == "Deployment"
        for c in [
            *o["spec"]["template"]["spec"].get("initContainers", []),
            *o["spec"]["template"]["spec"]["containers"],
        ]
        if c["name"].startswith("layers-readiness")
    }
    assert images == {f"{release.settings().image}:{__version__}"}


def test_helm_lint_strict_accepts_the_chart_package(dist: Path, names: release.Artifacts) -> None:
    import helm_python

    report: dict[str, Any] = helm_python.lint(dist / names.chart, strict=True)
    assert report["total_charts_linted"] == 1, report
    assert not report.get("errors"), report
    # Strict: a warning fails as an error does (severity 2 warning, 3 error).
    assert [m for m in report["messages"] if int(m["severity"]) >= 2] == [], report


def test_helm_lint_strict_fails_a_broken_chart(tmp_path: Path) -> None:
    """The lint above can fail: a chart whose template does not parse is refused."""
    import helm_python

    broken = tmp_path / "broken"
    (broken / "templates").mkdir(parents=True)
    (broken / "Chart.yaml").write_text("apiVersion: v2\nname: broken\nversion: 0.1.0\n")
    (broken / "values.yaml").write_text("{}\n")
    (broken / "templates" / "cm.yaml").write_text("kind: ConfigMap\nname: {{ .Values.x \n")
    report: dict[str, Any] = helm_python.lint(broken, strict=True)
    assert report.get("errors") or any(int(m["severity"]) >= 2 for m in report["messages"])


# --- the image archive --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inspected(dist: Path, names: release.Artifacts) -> dict[str, Any]:
    done = run([tool("skopeo"), "inspect", f"oci-archive:{dist / names.image}"])
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_skopeo_reads_the_version_revision_and_source_labels(
    inspected: dict[str, Any], names: release.Artifacts
) -> None:
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.version"] == __version__
    revision = labels["org.opencontainers.image.revision"]
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    # A commit of this repository, not a stand-in value.
    exists = run(["git", "-C", str(release.ROOT), "cat-file", "-e", f"{revision}^{{commit}}"])
    assert exists.returncode == 0, f"revision {revision} is no commit of this repository"
    assert labels["org.opencontainers.image.source"] == release.settings().source(names.sdist)
    assert inspected["Os"] == "linux"


@pytest.fixture(scope="module")
def st() -> Store:
    return image.store()


@pytest.fixture(scope="module")
def loaded(st: Store, dist: Path, names: release.Artifacts) -> Iterator[str]:
    """The image as a user gets it: pulled from the archive into a container store."""
    pulled = image.run(
        st.podman("pull", "--quiet", f"oci-archive:{dist / names.image}"), timeout=TIMEOUT
    )
    image_id = pulled.stdout.strip().splitlines()[-1]
    try:
        yield image_id
    finally:
        image.run(st.podman("rmi", "--force", image_id), timeout=120, check=False)


def in_image(st: Store, image_id: str, *argv: str) -> str:
    done = image.run(
        st.podman(
            "run",
            *container.ULIMITS,
            "--rm",
            "--network",
            "none",
            "--read-only",
            "--cap-drop",
            "ALL",
            "--entrypoint",
            argv[0],
            image_id,
            *argv[1:],
        ),
        timeout=TIMEOUT,
    )
    return done.stdout


def test_the_image_from_the_archive_runs_the_command(st: Store, loaded: str) -> None:
    assert in_image(st, loaded, "layers-sidecar", "--version").split() == [
        "layers-sidecar",
        __version__,
    ]


# --- the SBOM -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sbom_text(dist: Path, names: release.Artifacts) -> str:
    return (dist / names.sbom).read_text(encoding="utf-8")


def test_the_sbom_is_valid_cyclonedx(sbom_text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    sbom = json.loads(sbom_text)
    assert sbom["bomFormat"] == "CycloneDX"
    assert sbom["specVersion"] == "1.6"
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(sbom_text)
    assert error is None, error
    # ... and the validator does reject what breaks the schema.
    broken = json.dumps({**sbom, "components": [{"name": "x"}]})
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(broken) is not None


LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json; "
    "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"
)


def test_the_sbom_lists_exactly_the_python_distributions_of_the_image(
    sbom_text: str, st: Store, loaded: str
) -> None:
    listed = {
        (canonicalize_name(c["name"]), c["version"])
        for c in json.loads(sbom_text)["components"]
        if c["type"] == "library"
    }
    held = {
        (canonicalize_name(name), version)
        for name, version in json.loads(
            in_image(st, loaded, "/opt/venv/bin/python", "-c", LIST_DISTRIBUTIONS)
        )
    }
    assert ("layers-readiness", __version__) in held
    assert listed == held
    for component in json.loads(sbom_text)["components"]:
        name = canonicalize_name(component["name"])
        if name == "layers-readiness":
            # Installed from its own wheel, not from PyPI: cyclonedx-py gives it no pypi purl.
            assert "purl" not in component
        else:
            assert component["purl"] == f"pkg:pypi/{name}@{component['version']}"
