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
    assert [obj["kind"] for obj in objects] == ["Job", "Job", "Deployment"]
    for obj in objects:
        validate(obj, version)


def test_the_lifecycle_manifests_use_the_flags_as_spelt() -> None:
    flags = {option.flag for option in OPTIONS.values()}
    *_, worker = manifests()
    sidecars = [container(pod_spec(obj), "layers-readiness-serve") for obj in manifests()]
    assert [s["args"] for s in sidecars[:2]] == [["serve"], ["serve", "--quitquitquit"]]
    assert sidecars[2]["args"][:2] == ["serve", "--ready-file"]
    for sidecar in sidecars:
        assert {arg for arg in sidecar["args"] if arg.startswith("--")} <= flags
    # The worker reads the same path the sidecar writes, from the same emptyDir.
    ready = sidecars[2]["args"][2]
    reader = container(pod_spec(worker), "worker")
    # The worker's own variable, named so that nobody takes it for LAYERS_SIDECAR_READY_FILE.
    assert {"name": "WORKER_READY_FILE", "value": ready} in reader["env"]
    mount = Path(ready).parent.as_posix()
    assert any(m["mountPath"] == mount for m in reader["volumeMounts"])
    assert any(m["mountPath"] == mount for m in sidecars[2]["volumeMounts"])


def aliases(path: str) -> str:
    """The path as a Debian-based image resolves it: /var/run is a link to /run there (checked
    on the image's runtime base by tests/test_image.py)."""
    return "/run" + path.removeprefix("/var/run") if path.startswith("/var/run/") else path


def test_no_two_lifecycle_mounts_are_one_place() -> None:
    for obj in manifests():
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            places = [aliases(m["mountPath"]) for m in c.get("volumeMounts", [])]
            assert len(places) == len(set(places)), c["name"]
            assert not any(p in ("/run", "/var/run") or p.startswith("/run/") for p in places)


def test_the_lifecycle_jobs_always_end() -> None:
    native, classic, _ = manifests()
    for job in (native, classic):
        spec = pod_spec(job)
        assert job["spec"]["activeDeadlineSeconds"] > 0
        gate = spec["initContainers"][0]
        assert gate["args"] == ["check", "--wait"]
        # A bounded wait, below the Job's own deadline.
        assert {"name": "LAYERS_SIDECAR_DEADLINE", "value": "5m"} in gate["env"]
        assert job["spec"]["activeDeadlineSeconds"] > 5 * 60
    # Native: the sidecar is an init container the kubelet stops with the work.
    assert pod_spec(native)["initContainers"][1]["restartPolicy"] == "Always"
    assert [c["name"] for c in pod_spec(native)["containers"]] == ["sync"]
    # Classic: the work waits for the sidecar (bounded) and retries /quitquitquit (bounded).
    script = container(pod_spec(classic), "sync")["args"][0]
    assert script.count('[ "$i" -ge 30 ] && break') == 2
    assert "quitquitquit" in script
    assert "|| true" not in script


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
