"""The kubelet-rules judge (tests/kubelet.py) on its own: each rule against the documented
behaviour it encodes, and against each defect the first rollout met."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests import kubelet

Obj = dict[str, Any]

OURS = {"gate", "serve"}


def pod(
    *,
    fs_group: int | None = None,
    mode: int | None = 0o444,
    run_as_group: int | None = 65532,
    supplemental: list[int] | None = None,
) -> Obj:
    secret: Obj = {"secretName": "layers-api-key"}
    if mode is not None:
        secret["defaultMode"] = mode
    context: Obj = {"runAsUser": 65532}
    if run_as_group is not None:
        context["runAsGroup"] = run_as_group
    pod_context: Obj = {}
    if fs_group is not None:
        pod_context["fsGroup"] = fs_group
    if supplemental:
        pod_context["supplementalGroups"] = supplemental
    return {
        "spec": {
            "securityContext": pod_context,
            "initContainers": [
                {
                    "name": "gate",
                    "args": ["check", "--wait"],
                    "env": [{"name": "LAYERS_API_KEY_FILE", "value": "/etc/lr/api-key"}],
                    "volumeMounts": [{"name": "key", "mountPath": "/etc/lr", "readOnly": True}],
                    "securityContext": context,
                }
            ],
            "containers": [{"name": "app", "image": "app"}],
            "volumes": [{"name": "key", "secret": secret}],
        }
    }


def unreadable(spec: Obj) -> list[kubelet.Finding]:
    return list(kubelet.key_findings(spec, OURS))


@pytest.mark.parametrize(
    ("changes", "readable"),
    [
        # root:root 0440 and no fsGroup: uid 65532 gid 65532 is "other" (the first rollout).
        ({"mode": 0o440}, False),
        # The same file with an fsGroup: group fsGroup, and every container is in it.
        ({"mode": 0o440, "fs_group": 65532}, True),
        # A foreign fsGroup works as well: group read is added and the group is supplemental.
        ({"mode": 0o440, "fs_group": 101}, True),
        ({"mode": 0o400, "fs_group": 101}, True),  # read-only volume: the kubelet adds g+r
        # 0444: readable whatever the pod says.
        ({}, True),
        ({"fs_group": 2000}, True),
        # The kubelet's default, 0644, is readable by others too.
        ({"mode": None}, True),
        ({"mode": 0o600}, False),
        # Group root: a uid with no group of its own in the image runs as gid 0.
        ({"mode": 0o440, "run_as_group": 0}, True),
        ({"mode": 0o440, "supplemental": [0]}, True),
    ],
)
def test_who_reads_a_secret_volume_file(changes: dict[str, Any], readable: bool) -> None:
    found = unreadable(pod(**changes))
    assert (not found) == readable, found


def test_an_unreadable_key_says_why() -> None:
    (finding,) = unreadable(pod(mode=0o440))
    assert finding.rule == "key-unreadable"
    assert "0:0 0440" in finding.detail
    assert "uid 65532 gid 65532 groups []" in finding.detail


def test_a_key_file_without_a_mounted_secret_is_unreadable() -> None:
    spec = pod()
    spec["spec"]["initContainers"][0]["volumeMounts"] = []
    (finding,) = unreadable(spec)
    assert "no Secret mounted" in finding.detail


def container(name: str, port: int | None = None, probe: int | str | None = None) -> Obj:
    c: Obj = {"name": name}
    if port is not None:
        c["ports"] = [{"name": "http", "containerPort": port}]
    if probe is not None:
        c["readinessProbe"] = {"httpGet": {"path": "/", "port": probe}}
    return c


def template(containers: list[Obj], init: list[Obj] | None = None) -> Obj:
    return {"spec": {"containers": containers, "initContainers": init or []}}


@pytest.mark.parametrize(
    ("app", "ours", "native", "collides"),
    [
        (container("nginx", 8080), container("serve", 8080), False, True),
        # Probed but not declared (many charts): still a listener on 8080.
        (container("nginx", probe=8080), container("serve", 8080), True, True),
        (container("nginx", 8080, probe="http"), container("serve", 9476), True, False),
        (container("nginx", 9476), container("serve", 9476), True, True),
    ],
)
def test_port_collisions(app: Obj, ours: Obj, native: bool, collides: bool) -> None:
    before = template([app])
    if native:
        after = template([app], [{**ours, "restartPolicy": "Always"}])
    else:
        after = template([app, ours])
    found = list(kubelet.port_findings(before, after))
    assert bool(found) == collides, found


def test_an_init_container_that_runs_to_completion_holds_no_port() -> None:
    app = container("web", 8080)
    after = template([app], [container("migrate", 8080)])
    assert not list(kubelet.port_findings(template([app], [container("migrate", 8080)]), after))


def test_a_replaced_probe_is_a_change_not_a_port() -> None:
    app = container("web", 5678, probe="http")
    replaced = {**app, "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9476}}}
    before = template([app])
    after = template([replaced, container("serve", 9476)])
    assert not list(kubelet.port_findings(before, after))
    (finding,) = kubelet.unchanged_findings(before, after)
    assert (finding.rule, finding.where) == ("workload-changed", "web")
    assert "readinessProbe" in finding.detail


def test_reordered_or_changed_workload_parts_are_found() -> None:
    before: Obj = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "securityContext": {"fsGroup": 101},
            "containers": [{"name": "a"}, {"name": "b"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }
    assert not list(kubelet.unchanged_findings(before, copy.deepcopy(before)))
    after = copy.deepcopy(before)
    after["spec"]["containers"].reverse()
    after["spec"]["securityContext"]["fsGroup"] = 65532
    after["spec"]["volumes"][0]["emptyDir"] = {"medium": "Memory"}
    after["metadata"]["labels"]["app"] = "y"
    found = {(f.rule, f.where) for f in kubelet.unchanged_findings(before, after)}
    assert found == {
        ("workload-changed", "containers"),
        ("workload-changed", "spec.securityContext"),
        ("workload-changed", "data"),
        ("workload-changed", "label app"),
    }


def gate(*args: str, **env: str) -> Obj:
    return {
        "name": "gate",
        "args": ["check", *args],
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def sidecar(path: str, period: int = 2, failures: int = 30) -> Obj:
    probe = {"httpGet": {"path": path}, "periodSeconds": period, "failureThreshold": failures}
    return {"name": "serve", "restartPolicy": "Always", "args": ["serve"], "startupProbe": probe}


@pytest.mark.parametrize(
    ("init", "seconds"),
    [
        ([gate()], 0.0),  # exit 5 at once: Init:CrashLoopBackOff
        ([gate("--wait")], None),
        ([gate(LAYERS_SIDECAR_WAIT="true")], None),
        ([sidecar("/readyz")], 60.0),  # 30 x 2 s, then the kubelet kills it
        ([gate("--wait"), sidecar("/livez", 1)], None),
        ([gate("--wait"), sidecar("/readyz", 1, 10)], 10.0),
    ],
)
def test_how_long_a_hard_stop_at_boot_takes_to_cause_a_restart(
    init: list[Obj], seconds: float | None
) -> None:
    spec = template([{"name": "app"}], init)
    assert kubelet.restart_after_hard_stop(spec, OURS) == seconds


def job(containers: list[Obj], init: list[Obj] | None = None) -> Obj:
    return {"kind": "Job", "spec": {"template": template(containers, init)}}


def test_a_job_with_an_ordinary_container_of_ours_never_ends() -> None:
    before = job([{"name": "work"}])
    classic = job([{"name": "work"}, {"name": "serve", "args": ["serve"]}], [gate("--wait")])
    # (These bare containers read no key: only the Job's own rule matters here.)
    rules = {f.rule for f in kubelet.judge("Job", before, classic)} - {"key-unreadable"}
    assert rules == {"job-never-ends"}
    native = job([{"name": "work"}], [gate("--wait"), sidecar("/livez")])
    assert {f.rule for f in kubelet.judge("Job", before, native)} == {"key-unreadable"}


def test_a_workload_nothing_was_added_to_is_not_wired() -> None:
    before = job([{"name": "work"}])
    assert [f.rule for f in kubelet.judge("Job", before, before)] == ["not-wired"]


def test_pod_templates_of_every_kind() -> None:
    inner = template([{"name": "x"}])
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        assert kubelet.template({"kind": kind, "spec": {"template": inner}}) is inner
    cron = {"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": inner}}}}
    assert kubelet.template(cron) is inner
    assert kubelet.template({"kind": "Service", "spec": {}}) is None
