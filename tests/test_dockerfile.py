"""The Dockerfile: hadolint-clean, multi-stage, non-root, and agreeing with the manifests.

What can be read from the file itself: the linter (with the labels the image must carry, from
`.hadolint.yaml`), the shape of the stages, the runtime user and entrypoint, and that the build
context (`.dockerignore`) holds what the Dockerfile copies and nothing else. `test_image.py`
builds the image and runs it.
"""

from __future__ import annotations

import fnmatch
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.dockerfile import DOCKERFILE, Stage, parse
from tests.k8s import IMAGE_UID
from tests.tools import tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
PROVENANCE_LABELS = (
    "org.opencontainers.image.source",
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
)


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())[1]


def lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("hadolint"), "--no-color", "--config", str(HADOLINT_CONFIG), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_reports_nothing() -> None:
    result = lint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_config_requires_the_provenance_labels_and_no_others() -> None:
    config = yaml.safe_load(HADOLINT_CONFIG.read_text())
    assert config["strict-labels"] is True
    assert config["failure-threshold"] == "style"
    assert set(PROVENANCE_LABELS) <= set(config["label-schema"])


@pytest.mark.parametrize("label", PROVENANCE_LABELS)
def test_hadolint_fails_when_a_provenance_label_is_dropped(label: str, tmp_path: Path) -> None:
    text = DOCKERFILE.read_text()
    # Swapped for a label outside the schema, so the LABEL instruction stays well-formed.
    dropped_text, count = re.subn(rf'{re.escape(label)}="[^"]*"', 'org.example.other="x"', text)
    assert count == 1
    dropped = tmp_path / "Dockerfile"
    dropped.write_text(dropped_text)
    result = lint(dropped)
    assert result.returncode != 0
    assert f"DL3049 info: Label `{label}` is missing" in result.stdout, result.stdout
    assert "DL3050" in result.stdout  # the stand-in label is not in the schema: strict-labels


def test_the_ca_build_secret_is_optional_and_only_mounted(stages: list[Stage]) -> None:
    build = stages[0]
    runs = build.all("RUN")
    with_secret = [r for r in runs if "--mount=type=secret,id=ca" in r]
    assert len(with_secret) == 1
    assert "required=false" in with_secret[0]  # a build without a CA bundle still works
    assert "PIP_CERT=/run/secrets/ca" in with_secret[0]
    everything = DOCKERFILE.read_text()
    # Never copied, never an ENV: a build secret is not stored in any layer or in the config.
    for stage in stages:
        assert not any(re.search(r"\bca\b|cert|secret", c) for c in stage.all("COPY"))
        assert not any("PIP_CERT" in e or "SSL_CERT" in e for e in stage.all("ENV"))
    assert "ARG CA" not in everything


def test_every_hadolint_ignore_has_a_reason() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            above = lines[number - 1].strip()
            reason = f"line {number + 1}: say why beside `{line.strip()}`"
            assert above.startswith("#"), reason
            assert "hadolint" not in above, reason


def test_multi_stage_with_a_distroless_runtime(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name == "build"
    assert "distroless" in runtime.base
    # Debian 12's Python is 3.11 in both images, so the venv's interpreter link survives the copy.
    assert "debian12" in runtime.base
    assert build.base.startswith("debian:12")
    assert not runtime.base.endswith(":latest")


def test_runtime_stage_copies_only_the_venv(stages: list[Stage]) -> None:
    runtime = stages[-1]
    copies = runtime.all("COPY")
    assert copies == ["--from=build /opt/venv /opt/venv"]
    # No package manager, pip or compiler work happens in the final stage.
    assert runtime.all("RUN") == []


def test_build_stage_installs_no_compiler_and_leaves_no_cache(stages: list[Stage]) -> None:
    build = stages[0]
    runs = " ".join(build.all("RUN"))
    for compiler in ("gcc", "build-essential", "clang", "python3-dev", "libpython3-dev"):
        assert compiler not in runs
    assert "--only-binary=:all:" in runs
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert "uninstall --yes pip setuptools" in runs
    env = " ".join(build.all("ENV"))
    assert "PIP_NO_CACHE_DIR=1" in env


def test_runtime_user_entrypoint_and_port(stages: list[Stage]) -> None:
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users == [f"{IMAGE_UID}:{IMAGE_UID}"], "a fixed numeric non-root uid:gid"
    assert json.loads(runtime.all("ENTRYPOINT")[-1]) == ["layers-sidecar"]
    assert json.loads(runtime.all("CMD")[-1]) == ["serve"]
    assert runtime.all("EXPOSE") == ["8080"]
    env = " ".join(runtime.all("ENV"))
    # Nothing written to a read-only root filesystem: no .pyc at run time.
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "/opt/venv/bin" in env
    assert "LAYERS_SIDECAR_LISTEN=0.0.0.0:8080" in env


def ignored(path: str, patterns: list[str]) -> bool:
    """`.dockerignore` semantics for the patterns used here: last match wins, `!` re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        candidates = [body, body + "/*", body + "/**"]
        if body.startswith("**/"):
            candidates += [body[3:], "*/" + body[3:], "*/*/" + body[3:]]
        if any(fnmatch.fnmatch(path, c) for c in candidates) or path.startswith(body + "/"):
            result = not negate
    return result


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


@pytest.mark.parametrize("path", ["pyproject.toml", "README.md", "sidecar/cli.py"])
def test_build_context_holds_what_the_dockerfile_copies(
    path: str, ignore_patterns: list[str]
) -> None:
    assert not ignored(path, ignore_patterns)


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/config",
        "tests/support.py",
        "helm/layers-readiness/Chart.yaml",
        "deploy/base/kustomization.yaml",
        "sidecar/__pycache__/cli.cpython-311.pyc",
        "api-key.txt",
        ".env",
    ],
)
def test_build_context_leaves_out_everything_else(path: str, ignore_patterns: list[str]) -> None:
    assert ignored(path, ignore_patterns)


def test_copied_sources_exist_in_the_repository(stages: list[Stage]) -> None:
    build = stages[0]
    for copy in build.all("COPY"):
        *sources, _destination = copy.split()
        for source in sources:
            # README.md included: pyproject.toml names it as the readme, so the build needs it.
            assert (ROOT / source).exists(), source
