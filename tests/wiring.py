"""Foreign workloads (tests/workloads/) wired through every documented path, as a user would:

- the kustomize components (`native-sidecar`, `classic`) listed in a kustomization beside the
  workload's own YAML, built by `kubectl kustomize`;
- the chart's named templates included from a parent chart (the recipe in `_wiring.tpl`), in
  both wiring modes;
- `layers-sidecar inject --mode native|classic` run over the workload's file;
- the `injector` webhook's answer to the AdmissionReview of the Pod its controller creates (the
  pod template annotated `layers-readiness/inject: "true"`; tests/admission.py shapes the Pod and
  the review as the API server does), its JSON Patch applied with the `jsonpatch` package. The
  answer is `sidecar.injector.review.answer`, the function the webhook's `POST /mutate` calls
  (tests/test_injector.py sends the same reviews to the process over HTTPS). What the judge
  compares it with is that Pod before the patch, not the workload: the API server's defaults
  and the service-account volume are already in it.

`python -m tests.wiring [ROOT]` prints what the kubelet-rules judge (tests/kubelet.py) says of
each wiring, for the tree at ROOT (this one by default; an older commit's `deploy/` and `helm/`
unpacked elsewhere, for a before/after; `inject` and the webhook are always this tree's code).
"""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from sidecar.injector.review import answer
from sidecar.injector.wiring import INJECT, Wiring
from sidecar.testing import clean_env, command
from tests import admission, kubelet

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = Path(__file__).resolve().parent / "workloads"

Obj = dict[str, Any]

COMPONENTS = ("native-sidecar", "classic")
MODES = ("native", "classic")
PATHS = (
    *(f"kustomize:{c}" for c in COMPONENTS),
    *(f"{how}:{m}" for how in ("helm", "inject", "webhook") for m in MODES),
)


def mode_of(path: str) -> str:
    """native or classic: the wiring mode a path stands for."""
    return "native" if path.endswith(("native", "native-sidecar")) else "classic"


def workloads() -> list[Path]:
    return sorted(WORKLOADS.glob("*.yaml"))


def load(path: Path) -> Obj:
    doc: Obj = yaml.safe_load(path.read_text())
    return doc


def kustomize_wired(
    root: Path, component: str, workload: Path, tmp: Path, *, app_probe: bool = False
) -> list[Obj]:
    """The workload's YAML and one component of `root`/deploy, built as a user builds it
    (`app_probe`: with the readiness-probe component the docs once recommended beside it)."""
    tmp.mkdir(parents=True, exist_ok=True)
    components = [component] + (["readiness-probe"] if app_probe else [])
    shutil.copy(workload, tmp / workload.name)
    # A workload that names its namespace gets it from the kustomization, as docs/deploy.md says
    # (kustomize points the containers' envFrom at the generated ConfigMap within one namespace).
    namespace = (load(workload).get("metadata") or {}).get("namespace")
    (tmp / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                **({"namespace": namespace} if namespace else {}),
                "resources": [workload.name],
                # Relative, as kustomize wants it.
                "components": [
                    os.path.relpath(root / "deploy" / "components" / name, tmp)
                    for name in components
                ],
            }
        )
    )
    done = subprocess.run(
        ["kubectl", "kustomize", str(tmp)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"kubectl kustomize ({component}, {workload.name}): {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# What each marker becomes in the parent chart's template: the recipe of `_wiring.tpl`.
_INCLUDES = {
    "- __LR_INIT__": '{{{{- include "layers-readiness.initContainers" $lr | nindent {n} }}}}',
    "- __LR_CONTAINERS__": (
        '{{{{- with include "layers-readiness.containers" $lr }}}}{{{{- . | nindent {n} }}}}'
        "{{{{- end }}}}"
    ),
    "- __LR_VOLUMES__": '{{{{- include "layers-readiness.volume" $lr | nindent {n} }}}}',
    "__LR_LABELS__: x": '{{{{- include "layers-readiness.podLabels" $lr | nindent {n} }}}}',
    "readinessProbe: __LR_PROBE__": (
        'readinessProbe:{{{{- include "layers-readiness.readinessProbe" $lr | nindent {m} }}}}'
    ),
}


def helm_template(doc: Obj, *, app_probe: bool) -> str:
    """The workload as a template of the user's own chart, wired by the named templates.

    `app_probe` adds what the recipe once said: the first container's readinessProbe replaced
    by the layers-readiness one (kept to judge the old wiring as it was documented).
    """
    wired = copy.deepcopy(doc)
    pod = kubelet.template(wired)
    assert pod is not None
    pod.setdefault("metadata", {}).setdefault("labels", {})["__LR_LABELS__"] = "x"
    spec = pod["spec"]
    spec["initContainers"] = ["__LR_INIT__", *spec.get("initContainers", [])]
    spec["containers"] = [*spec["containers"], "__LR_CONTAINERS__"]
    spec["volumes"] = [*spec.get("volumes", []), "__LR_VOLUMES__"]
    if app_probe:
        spec["containers"][0]["readinessProbe"] = "__LR_PROBE__"
    job = "true" if doc["kind"] in kubelet.JOB_KINDS else "false"
    lines = [
        '{{- $lr := dict "values" (index .Values "layers-readiness") "kubeVersion" '
        f'.Capabilities.KubeVersion.Version "job" {job} }}}}'
    ]
    for line in yaml.safe_dump(wired, sort_keys=False).splitlines():
        text = line.strip()
        if text in _INCLUDES:
            n = len(line) - len(line.lstrip())
            line = " " * n + _INCLUDES[text].format(n=n, m=n + 2)
        lines.append(line)
    return "\n".join(lines) + "\n"


def helm_wired(root: Path, mode: str, workload: Path, tmp: Path, *, app_probe: bool) -> list[Obj]:
    import helm_python

    chart = tmp / "parent"
    (chart / "templates").mkdir(parents=True, exist_ok=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: parent\nversion: 1.0.0\n"
        "dependencies:\n  - name: layers-readiness\n    version: 0.1.0\n"
    )
    (chart / "values.yaml").write_text("layers-readiness:\n  example:\n    enabled: false\n")
    (chart / "templates" / "workload.yaml").write_text(
        helm_template(load(workload), app_probe=app_probe)
    )
    if not (chart / "charts" / "layers-readiness").exists():
        shutil.copytree(root / "helm" / "layers-readiness", chart / "charts" / "layers-readiness")
    values = {"layers-readiness": {"wiring": {"mode": mode}}}
    with helm_python.Chart.load(chart) as loaded:
        rendered: dict[str, str] = loaded.render(values, name="r", namespace="apps")
    text = next(t for p, t in rendered.items() if p.endswith("templates/workload.yaml"))
    return [doc for doc in yaml.safe_load_all(text) if doc]


def inject_text(mode: str, *files: Path, stdin: str = "", **env: str) -> str:
    """`layers-sidecar inject --mode MODE FILE...` as a user runs it (`env`: its variables):
    its standard output."""
    done = subprocess.run(
        command("inject", "--mode", mode, *map(str, files)),
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"inject --mode {mode} {' '.join(map(str, files))}: {done.stderr}"
    return done.stdout


def inject_wired(mode: str, workload: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(inject_text(mode, workload)) if doc]


def pod_of(workload: Path) -> Obj:
    """The Pod the workload's controller creates, as the webhook receives it: the pod template
    annotated to opt in, the API server's defaults and service-account volume added."""
    doc = load(workload)
    pod = kubelet.template(doc)
    assert pod is not None
    pod.setdefault("metadata", {}).setdefault("annotations", {})[INJECT] = "true"
    created, _ = admission.pod_from(doc)
    return admission.as_stored(created)


def webhook_patch(mode: str, pod: Obj) -> list[Obj] | None:
    """The JSON Patch the webhook answers the review of `pod`'s creation with (None: none)."""
    review = admission.admission_review(pod, admission.NAMESPACE)
    response = answer(review, Wiring(mode=mode)).review["response"]
    assert response["uid"] == review["request"]["uid"]
    assert response["allowed"] is True
    assert "warnings" not in response, response["warnings"]
    if "patch" not in response:
        return None
    assert response["patchType"] == "JSONPatch"
    operations: list[Obj] = json.loads(base64.b64decode(response["patch"]))
    return operations


def webhook_wired(mode: str, workload: Path) -> Obj:
    pod = pod_of(workload)
    operations = webhook_patch(mode, pod)
    assert operations, f"the webhook left {workload.name}'s annotated pod unpatched"
    patched: Obj = jsonpatch.apply_patch(pod, operations)
    return patched


def before(path: str, workload: Path) -> Obj:
    """What the judge compares a wiring through `path` with: the workload as its file has it,
    or, for the webhook, the Pod before the patch."""
    return pod_of(workload) if path.startswith("webhook:") else load(workload)


def wired(root: Path, path: str, workload: Path, tmp: Path, *, app_probe: bool) -> Obj:
    """The workload after wiring through `path` (one of PATHS); for the webhook, its Pod.
    (`app_probe` is the old chart and component recipe's; inject and the webhook have none.)"""
    how, _, variant = path.partition(":")
    if how == "webhook":
        return webhook_wired(variant, workload)
    if how == "kustomize":
        docs = kustomize_wired(root, variant, workload, tmp, app_probe=app_probe)
    elif how == "helm":
        docs = helm_wired(root, variant, workload, tmp, app_probe=app_probe)
    else:
        docs = inject_wired(variant, workload)
    original = load(workload)
    (found,) = [d for d in docs if d["kind"] == original["kind"]]
    return found


def judge(path: str, workload: Path, after: Obj) -> list[kubelet.Finding]:
    """The judge's findings on `after`, a wiring of `workload` through `path` (a Job's Pod is
    judged as a Job's: it must end)."""
    return kubelet.judge(load(workload)["kind"], before(path, workload), after)


def judged(root: Path, *, app_probe: bool) -> Iterator[tuple[str, str, list[kubelet.Finding]]]:
    """(workload file, path, findings) for every workload through every path."""
    with tempfile.TemporaryDirectory() as directory:
        for index, workload in enumerate(workloads()):
            for path in PATHS:
                tmp = Path(directory) / f"{index}-{path.replace(':', '-')}"
                after = wired(root, path, workload, tmp, app_probe=app_probe)
                yield workload.stem, path, judge(path, workload, after)


def main(argv: list[str]) -> int:
    roots = [arg for arg in argv if not arg.startswith("--")]
    root = Path(roots[0]).resolve() if roots else ROOT
    app_probe = "--app-probe" in argv
    totals: dict[str, int] = {}
    sound = 0
    for name, path, findings in judged(root, app_probe=app_probe):
        rules = sorted({f.rule for f in findings})
        print(f"{name:20} {path:26} {', '.join(rules) or 'sound'}")
        for finding in findings:
            print(f"    {finding}")
            totals[finding.rule] = totals.get(finding.rule, 0) + 1
        sound += not findings
    print(f"\nsound wirings: {sound} of {len(workloads()) * len(PATHS)}")
    for rule, count in sorted(totals.items()):
        print(f"  {rule}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
