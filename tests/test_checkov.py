"""checkov over the rendered chart (every ci scenario) and every kustomize build: each finding left
is accepted below with its reason, per container (the `check` init container and the native
sidecar are judged apart from the application), and an accepted finding that no longer occurs
fails too, so the list never outlives its reasons. How the scan is made: tests/checkov.py.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.checkov import Finding, findings, run_checkov, write_scan_directory

# (check, source pattern, container pattern) -> why it stays. "" as container: the object itself.
ACCEPTED: dict[tuple[str, str, str], str] = {
    # CKV_K8S_43 "Image should use digest"
    ("CKV_K8S_43", "*", "layers-readiness*"): (
        "the sidecar, native or classic, and the check init container take a tag by default because"
        " no image is published to pin; image.digest (ci/native-no-app-probe) or kustomize"
        " `images: digest:` pins all of them"
    ),
    ("CKV_K8S_43", "*", "app"): "the example application stands for yours: pin your own image",
    ("CKV_K8S_43", "chart-job", "work"): "the example Job's work image stands for yours",
    # CKV_K8S_15 "Image Pull Policy should be Always"
    ("CKV_K8S_15", "*", "layers-readiness*"): (
        "IfNotPresent with an immutable tag or digest: Always would make every start of the"
        " sidecar and every restart of the check init container depend on the registry;"
        " image.pullPolicy sets it"
    ),
    ("CKV_K8S_15", "*", "app"): "the example application stands for yours",
    ("CKV_K8S_15", "chart-job", "work"): "the example Job's work image stands for yours",
    # CKV_K8S_21 "The default namespace should not be used"
    ("CKV_K8S_21", "kustomize-*", ""): (
        "kustomize builds leave the namespace to your overlay or `kubectl -n`; the chart always"
        " sets the release's"
    ),
    # CKV2_K8S_6 "Minimize the admission of pods which lack an associated NetworkPolicy"
    ("CKV2_K8S_6", "chart-*", ""): (
        "off by default: egress to the Layers API depends on the cluster's CNI, DNS and proxy;"
        " networkPolicy.enabled adds one (ci/platform passes)"
    ),
    ("CKV2_K8S_6", "kustomize-*", ""): (
        "the examples stand for your workload, whose NetworkPolicy is yours; the chart's shows"
        " what the sidecar needs"
    ),
    # CKV_K8S_11 "CPU limits should be set"
    ("CKV_K8S_11", "*", "layers-readiness*"): (
        "no CPU limit on purpose: a throttled sidecar answers its probes late, and a readiness"
        " probe that times out takes the pod out of its Service for nothing; the request keeps"
        " its share and the memory limit stays"
    ),
    # CKV_K8S_9 "Readiness Probe Should be Configured"
    ("CKV_K8S_9", "*", "app"): (
        "the example application stands for yours and keeps its own probes as they are: the"
        " sidecar's own readinessProbe decides the pod's readiness (a pod is Ready only when all"
        " its containers are); wiring never replaces an application's probe"
    ),
}


def accepted_by(finding: Finding) -> tuple[str, str, str] | None:
    for key in ACCEPTED:
        check, source, container = key
        if finding.check != check or not fnmatch(finding.source, source):
            continue
        if (container == "") == (finding.container == "") and fnmatch(finding.container, container):
            return key
    return None


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> set[Finding]:
    directory: Path = tmp_path_factory.mktemp("checkov")
    write_scan_directory(directory)
    report = run_checkov(directory)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 1000, report["summary"]  # the scan saw the manifests
    return findings(report)


def test_every_finding_is_accepted_with_a_reason(found: set[Finding]) -> None:
    unexplained = sorted(str(f) for f in found if accepted_by(f) is None)
    assert not unexplained, "checkov findings without a reason in ACCEPTED:\n" + "\n".join(
        unexplained
    )


def test_no_accepted_finding_is_stale(found: set[Finding]) -> None:
    used = {accepted_by(f) for f in found}
    stale = [key for key in ACCEPTED if key not in used]
    assert not stale, f"accepted findings checkov no longer reports: {stale}"


def test_init_container_and_native_sidecar_are_scanned(found: set[Finding]) -> None:
    """They are judged on their own: the same findings as the classic sidecar, no fewer."""
    containers = {(f.source, f.container) for f in found}
    assert ("chart-classic", "layers-readiness-check") in containers
    assert ("chart-default", "layers-readiness-serve") in containers  # the native sidecar
    assert ("kustomize-examples-classic", "layers-readiness-check") in containers
    # and what the chart fixes stays fixed: probes, security contexts, resources
    fixed = {"CKV_K8S_8", "CKV_K8S_20", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_28", "CKV_K8S_37"}
    assert not {f.check for f in found} & fixed
