"""checkov (the PyPI package, from the test extras) over what users deploy: the chart rendered for
every `ci/*-values.yaml` scenario and every kustomize build under deploy/.

Two things make its findings exact rather than merely counted:
- Each chart scenario is rendered as a release of its own name. checkov's graph checks (a pod
  "has a NetworkPolicy") join every file of a scan by labels, whatever the namespace, so one
  scenario's NetworkPolicy would otherwise cover the pods of all the others.
- A workload is scanned once per container, as a copy holding only that container (init
  containers included, so the `check` init container and the native sidecar are judged on
  their own). checkov stops at the first failing container of a pod: without the split, the
  application's finding would hide the same finding on the sidecar.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.k8s import CHART_DIR, DEPLOY_DIR, Obj, kustomizations, kustomize, render_chart
from tests.tools import tool

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
SEPARATOR = "--"  # between a workload's name and its container's in a split copy


@dataclass(frozen=True)
class Finding:
    check: str  # CKV_K8S_43
    source: str  # chart-default, kustomize-examples-classic
    kind: str  # Deployment
    container: str  # "" for a finding about the object, not one container

    def __str__(self) -> str:
        where = f" container {self.container}" if self.container else ""
        return f"{self.check} {self.source} {self.kind}{where}"


def sources() -> dict[str, list[Obj]]:
    """Every deployable set of objects, by name: chart-<scenario>, kustomize-<directory>."""
    found: dict[str, list[Obj]] = {}
    for values_file in sorted((CHART_DIR / "ci").glob("*-values.yaml")):
        scenario = values_file.name.removesuffix("-values.yaml")
        values = yaml.safe_load(values_file.read_text()) or {}
        rendered = render_chart(values, name=scenario, namespace=f"ci-{scenario}")
        found[f"chart-{scenario}"] = [o for objects in rendered.values() for o in objects]
    for directory in kustomizations(DEPLOY_DIR):
        name = str(directory.relative_to(DEPLOY_DIR)).replace("/", "-")
        found["kustomize-" + ("all" if name == "." else name)] = kustomize(directory)
    return found


def _pod_spec(obj: Obj) -> Obj:
    spec: Obj = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def split_by_container(objects: list[Obj]) -> list[Obj]:
    """Every workload replaced by one copy per container, named <workload>--<container>."""
    result = []
    for obj in objects:
        if obj["kind"] not in WORKLOADS:
            result.append(obj)
            continue
        spec = _pod_spec(obj)
        for field in ("initContainers", "containers"):
            for container in spec.get(field) or []:
                one = copy.deepcopy(obj)
                one_spec = _pod_spec(one)
                one_spec["initContainers"] = [container] if field == "initContainers" else []
                one_spec["containers"] = [container] if field == "containers" else []
                one["metadata"]["name"] = f"{obj['metadata']['name']}{SEPARATOR}{container['name']}"
                result.append(one)
    return result


def write_scan_directory(directory: Path, split: bool = True) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, objects in sources().items():
        chosen = split_by_container(objects) if split else objects
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(chosen, sort_keys=False))


def run_checkov(directory: Path) -> dict[str, Any]:
    """checkov's JSON report of a directory of manifests (Kubernetes checks only, offline)."""
    result = subprocess.run(
        [
            tool("checkov"),
            "--directory",
            str(directory),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # exit 1 means "found failed checks"; anything else is checkov itself failing
    assert result.returncode in {0, 1}, result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def findings(report: dict[str, Any]) -> set[Finding]:
    found = set()
    for failed in report["results"]["failed_checks"]:
        kind, _namespace, name = failed["resource"].split(".")[:3]
        container = ""
        keys = failed["check_result"].get("evaluated_keys") or []
        if SEPARATOR in name and any("ontainers/" in key for key in keys):
            container = name.split(SEPARATOR, 1)[1]
        source = Path(failed["file_path"]).stem
        found.add(Finding(failed["check_id"], source, kind, container))
    return found
