"""The lifecycle docs' manifests are valid Kubernetes and use the settings as the program spells
them; the README and docs stand alone (no reference to a contract outside the repository)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sidecar.commands import COMMANDS
from sidecar.settings import OPTIONS
from tests.k8s import K8S_VERSIONS, ROOT, Obj, container, pod_spec, validate

LIFECYCLE = ROOT / "docs" / "lifecycle.md"
YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def manifests() -> list[Obj]:
    blocks = YAML_BLOCK.findall(LIFECYCLE.read_text(encoding="utf-8"))
    return [yaml.safe_load(block) for block in blocks]


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_the_lifecycle_manifests_validate(version: str) -> None:
    objects = manifests()
    assert [obj["kind"] for obj in objects] == ["Job", "Deployment"]
    for obj in objects:
        validate(obj, version)


def test_the_lifecycle_manifests_use_the_flags_as_spelt() -> None:
    flags = {option.flag for option in OPTIONS.values()}
    job, worker = manifests()
    sidecars = {obj["kind"]: container(pod_spec(obj), "layers-readiness") for obj in (job, worker)}
    assert sidecars["Job"]["args"] == ["serve", "--quitquitquit"]
    assert sidecars["Deployment"]["args"][:2] == ["serve", "--ready-file"]
    for sidecar in sidecars.values():
        assert {arg for arg in sidecar["args"] if arg.startswith("--")} <= flags
    # The worker reads the same path the sidecar writes, from the same emptyDir.
    ready = sidecars["Deployment"]["args"][2]
    reader = container(pod_spec(worker), "worker")
    # The worker's own variable, named so that nobody takes it for LAYERS_SIDECAR_READY_FILE.
    assert {"name": "WORKER_READY_FILE", "value": ready} in reader["env"]
    mount = Path(ready).parent.as_posix()
    assert any(m["mountPath"] == mount for m in reader["volumeMounts"])
    assert any(m["mountPath"] == mount for m in sidecars["Deployment"]["volumeMounts"])


def test_the_docs_and_the_chart_stand_alone() -> None:
    chart = [path for path in sorted((ROOT / "helm").rglob("*")) if path.is_file()]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *chart]:
        text = path.read_text(encoding="utf-8", errors="replace")
        assert "SPEC.md" not in text, path.relative_to(ROOT)


def test_the_configuration_table_names_the_demo_s_own_defaults() -> None:
    # The demo changes some defaults (quicker polls, readable logs, loopback); the README's table
    # must say so on each of those rows, or a newcomer reads `json` and gets console lines.
    rows = {
        line.split("|")[1].strip().split()[0].strip("`"): line
        for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `--")
    }
    for name, value in COMMANDS["demo"].defaults.items():
        row = rows[OPTIONS[name].flag]
        assert f"`demo` defaults to `{value}`" in row, row


def test_the_worker_s_variable_is_not_named_like_the_sidecar_s() -> None:
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        assert "LAYERS_READY_FILE" not in path.read_text(encoding="utf-8"), path
