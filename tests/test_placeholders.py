"""No placeholder a user can trip on: not in what the chart renders, not in what kustomize builds,
not in a default, not in a command the documentation gives.

A placeholder is text that stands for something the user must fill in and that breaks or points
somewhere wrong when left as it is: `OWNER`, `ghcr.io/example/...`, `example/layers-readiness`,
`<your-...>`, `YOUR_...`, `CHANGEME`. (Hostnames under example.com / .invalid in tested example
values and in the user's own illustrative workloads are reserved names, not ours to publish.)
The project has no public home yet (README, "Releasing and hosting your own copy"): defaults
name the image `make release` builds, and every alert's runbook_url is a path that exists.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import release
from tests.k8s import CHART_DIR, DEPLOY_DIR, ROOT, kustomizations

PLACEHOLDER = re.compile(
    r"\bOWNER\b|ghcr\.io/example\b|(?<![\w.-])example/layers-readiness|<your[\w -]*>"
    r"|\bYOUR_[A-Z_]+|CHANGE_?ME",
)

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), CHART_DIR / "README.md"]
FENCED = re.compile(r"^ *```[^\n]*\n(.*?)^ *```", re.MULTILINE | re.DOTALL)

# Files whose content is a default somebody runs or installs as it is.
DEFAULTS = [
    ROOT / "Dockerfile",
    ROOT / "pyproject.toml",
    *sorted(CHART_DIR.glob("*.yaml")),
    CHART_DIR / "values.schema.json",
    *sorted(CHART_DIR.glob("files/*")),
    *sorted(CHART_DIR.glob("templates/*")),
    *sorted((ROOT / "monitoring").glob("*")),
    *sorted(DEPLOY_DIR.rglob("*.yaml")),
]


def found(text: str) -> list[str]:
    return sorted({m.group(0) for m in PLACEHOLDER.finditer(text)})


def test_the_pattern_catches_the_placeholders_this_project_had() -> None:
    for text in (
        "image: ghcr.io/OWNER/layers-readiness:0.1.0",
        "image: ghcr.io/example/layers-readiness:0.1.0",
        "--set image.repository=example/layers-readiness",
        "kubectl -n <your-namespace> apply",
        "YOUR_REGISTRY/layers-readiness",
    ):
        assert found(text), text
    assert not found("image: localhost/layers-readiness:0.1.0  # the billing owner")


@pytest.mark.parametrize("path", DEFAULTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_default_holds_a_placeholder(path: Path) -> None:
    assert found(path.read_text(encoding="utf-8")) == []


def chart_values() -> list[tuple[str, dict[str, Any]]]:
    cases: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    for file in sorted((CHART_DIR / "ci").glob("*.yaml")):
        cases.append((file.name, yaml.safe_load(file.read_text()) or {}))
    # Everything the chart can render at once: monitoring objects and the hub.
    cases.append(
        (
            "everything",
            {
                "prometheusRule": {"enabled": True},
                "podMonitor": {"enabled": True},
                "grafanaDashboard": {"enabled": True},
                "hub": {"enabled": True},
            },
        )
    )
    return cases


@pytest.mark.parametrize(("name", "values"), chart_values(), ids=[c[0] for c in chart_values()])
def test_the_rendered_chart_holds_no_placeholder(name: str, values: dict[str, Any]) -> None:
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(values, name="shop", namespace="apps")
    for path, text in rendered.items():
        assert found(text) == [], f"{name}: {path}"


def test_every_rendered_runbook_url_resolves_in_the_repository() -> None:
    """The default runbook_url is a path in every checkout, fork and sdist, never a 404."""
    import helm_python

    values = {"prometheusRule": {"enabled": True}, "hub": {"enabled": True}}
    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(values, name="shop", namespace="apps")
    urls = set(re.findall(r"runbook_url: (\S+)", "\n".join(rendered.values())))
    assert len(urls) >= 15
    for url in urls:
        page, _, anchor = url.partition("#")
        assert (ROOT / page).is_file(), url
        heading = re.compile(rf"^#+ {re.escape(anchor)}$", re.IGNORECASE | re.MULTILINE)
        assert heading.search((ROOT / page).read_text(encoding="utf-8")), url


@pytest.mark.parametrize(
    "directory", kustomizations(), ids=lambda p: str(p.relative_to(DEPLOY_DIR))
)
def test_kustomize_builds_hold_no_placeholder(directory: Path) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    assert found(built.stdout) == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_documented_command_or_snippet_holds_a_placeholder(document: Path) -> None:
    for block in FENCED.findall(document.read_text(encoding="utf-8")):
        assert found(block) == [], f"{document.name}:\n{block}"


def test_the_release_derives_the_image_and_home_from_one_setting(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    none = release.settings(tmp_path)
    assert none.home == ""
    assert none.image == "localhost/layers-readiness"
    assert none.source("layers_readiness-1.tar.gz") == "layers_readiness-1.tar.gz"
    (tmp_path / "pyproject.toml").write_text(
        "[tool.layers-readiness]\nhome = 'https://github.com/Acme/layers-readiness/'\n"
    )
    home = release.settings(tmp_path)
    assert home.home == "https://github.com/Acme/layers-readiness"
    assert home.image == "ghcr.io/acme/layers-readiness"
    assert home.source("ignored") == home.home
    # The repository's own setting: no public home yet.
    assert release.settings().home == ""


def test_the_documented_kustomization_builds_from_a_checkout_beside_yours(tmp_path: Path) -> None:
    """docs/deploy.md's "your kustomization.yaml", in a directory beside a checkout of this
    repository (as `../layers-readiness`), builds and wires the sidecar: no remote needed."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    (block,) = [b for b in FENCED.findall(text) if b.startswith("# your kustomization.yaml\n")]
    (tmp_path / "layers-readiness").symlink_to(ROOT)
    app = tmp_path / "app"
    app.mkdir()
    (app / "kustomization.yaml").write_text(block)
    (app / "deployment.yaml").write_text((DEPLOY_DIR / "app" / "deployment.yaml").read_text())
    (app / "job.yaml").write_text((ROOT / "tests" / "workloads" / "job.yaml").read_text())
    built = subprocess.run(
        ["kubectl", "kustomize", str(app)], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    images = re.findall(r"image: (\S+)", built.stdout)
    assert f"localhost/layers-readiness:{release.settings().version}" in images, images
