"""The kubelet's documented rules, as pure functions over a workload before and after wiring.

A wiring is judged on what a real kubelet would do with it, not on what our own example app
happens to tolerate:

- Secret volume files are owned by root:root; when the pod sets `fsGroup` their group is the
  fsGroup and, the volume being read-only, group read is added to the rendered mode
  (`defaultMode`, 0644 when unset, or an item's `mode`). Every container's supplemental groups
  include the fsGroup. Whether a container reads the key follows from its effective uid, gid and
  groups (container securityContext over pod securityContext over the image's user).
- Containers of a pod share one network namespace: a port declared or probed by two containers
  that run at the same time is a collision (init containers that run to completion do not count;
  native sidecars, `restartPolicy: Always`, do).
- The workload's own containers, init containers, probes, volumes, pod securityContext and
  template labels are compared with the input: wiring must not change them.
- A hard stop at boot (a kill switch: `check` exits 5 and `/readyz` answers 503) causes a restart
  when an init container's `check` exits non-zero (anything but `check --wait`) or a startupProbe
  asks `/readyz`; after failureThreshold x periodSeconds for the probe.
- A Job's pod ends only when its regular containers have all ended: an ordinary container of ours
  running `serve` keeps it running for ever.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# Our image's user when a container names no group: 65532 is in its /etc/passwd with group
# 65532. Any other uid without runAsGroup gets group 0 from the runtime (not in the image's
# passwd); only ours mount the key, so that case only matters for a foreign image.
IMAGE_GROUP = {65532: 65532}

# The kubelet's default mode for Secret volume files.
DEFAULT_MODE = 0o644

JOB_KINDS = frozenset({"Job", "CronJob"})


@dataclass(frozen=True, order=True)
class Finding:
    rule: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule} [{self.where}]: {self.detail}"


def template(doc: Mapping[str, Any]) -> Obj | None:
    """The pod template of a workload document (the object itself for a Pod); None otherwise."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind == "Pod":
        return dict(doc)
    if kind == "CronJob":
        found = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template")
        return found if isinstance(found, dict) else None
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        found = spec.get("template")
        return found if isinstance(found, dict) else None
    return None


def _containers(pod: Mapping[str, Any], field: str) -> list[Obj]:
    return list((pod.get("spec") or {}).get(field) or [])


def _native(container: Mapping[str, Any]) -> bool:
    return container.get("restartPolicy") == "Always"


def _names(items: list[Obj]) -> set[str]:
    return {item["name"] for item in items}


def identity(container: Mapping[str, Any], pod: Mapping[str, Any]) -> tuple[int, int, set[int]]:
    """The effective uid, gid and supplemental groups of a container's process."""
    pod_sc = (pod.get("spec") or {}).get("securityContext") or {}
    sc = container.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser", 0))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup", IMAGE_GROUP.get(uid, 0)))
    groups = set(pod_sc.get("supplementalGroups") or [])
    if "fsGroup" in pod_sc:
        groups.add(pod_sc["fsGroup"])
    return uid, gid, groups


def secret_file(
    volume: Mapping[str, Any], key: str, pod: Mapping[str, Any]
) -> tuple[int, int, int]:
    """(owner uid, owner gid, mode) of one key's file in a Secret volume, as the kubelet
    makes it."""
    secret = volume["secret"]
    mode = secret.get("defaultMode", DEFAULT_MODE)
    for item in secret.get("items") or []:
        if item.get("key") == key and "mode" in item:
            mode = item["mode"]
    fs_group = ((pod.get("spec") or {}).get("securityContext") or {}).get("fsGroup")
    if fs_group is None:
        return 0, 0, mode
    # SetVolumeOwnership: group fsGroup, and group read added on a read-only volume.
    return 0, fs_group, mode | 0o440


def can_read(uid: int, gid: int, groups: set[int], file: tuple[int, int, int]) -> bool:
    owner, group, mode = file
    if uid == 0 or uid == owner:
        # Root without CAP_DAC_OVERRIDE (capabilities dropped) still owns the file.
        return bool(mode & 0o400)
    if group == gid or group in groups:
        return bool(mode & 0o040)
    return bool(mode & 0o004)


def _env(container: Mapping[str, Any], name: str) -> str | None:
    for entry in container.get("env") or []:
        if entry.get("name") == name:
            value = entry.get("value")
            return value if isinstance(value, str) else None
    return None


def key_findings(pod: Mapping[str, Any], ours: set[str]) -> Iterator[Finding]:
    volumes = {v["name"]: v for v in (pod.get("spec") or {}).get("volumes") or []}
    for container in _containers(pod, "initContainers") + _containers(pod, "containers"):
        if container["name"] not in ours:
            continue
        key_file = _env(container, "LAYERS_API_KEY_FILE")
        if key_file is None:
            yield Finding("key-unreadable", container["name"], "no LAYERS_API_KEY_FILE")
            continue
        directory, _, name = key_file.rpartition("/")
        mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == directory]
        if not mounts or "secret" not in volumes.get(mounts[0]["name"], {}):
            yield Finding("key-unreadable", container["name"], f"{key_file}: no Secret mounted")
            continue
        file = secret_file(volumes[mounts[0]["name"]], name, pod)
        uid, gid, groups = identity(container, pod)
        if not can_read(uid, gid, groups, file):
            owner, group, mode = file
            yield Finding(
                "key-unreadable",
                container["name"],
                f"{key_file} is {owner}:{group} {mode:04o}; the process is uid {uid} gid {gid} "
                f"groups {sorted(groups)}",
            )


def _ports(container: Mapping[str, Any]) -> set[int]:
    """Ports a container listens on: declared, and those its own probes ask."""
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    found = set(named.values())
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        action = container.get(probe) or {}
        for kind in ("httpGet", "tcpSocket", "grpc"):
            port = (action.get(kind) or {}).get("port")
            if isinstance(port, int):
                found.add(port)
            elif isinstance(port, str) and port in named:
                found.add(named[port])
            elif isinstance(port, str) and port.isdigit():
                found.add(int(port))
    return found


def port_findings(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[Finding]:
    # The workload's containers are taken as they were: a probe the wiring rewrote is a change
    # (reported as such), not what the application listens on.
    original = {
        c["name"]: c
        for c in _containers(before, "containers") + _containers(before, "initContainers")
    }
    running = [c for c in _containers(after, "initContainers") if _native(c)]
    running += _containers(after, "containers")
    seen: dict[int, str] = {}
    for container in running:
        for port in sorted(_ports(original.get(container["name"], container))):
            if port in seen:
                yield Finding(
                    "port-collision",
                    container["name"],
                    f"port {port} is also used by {seen[port]}",
                )
            else:
                seen[port] = container["name"]


def unchanged_findings(before: Mapping[str, Any], after: Mapping[str, Any]) -> Iterator[Finding]:
    for field in ("containers", "initContainers"):
        was = _containers(before, field)
        now = {c["name"]: c for c in _containers(after, field)}
        for container in was:
            if container["name"] not in now:
                yield Finding("workload-changed", container["name"], f"gone from {field}")
            elif now[container["name"]] != container:
                changed = sorted(
                    key
                    for key in set(container) | set(now[container["name"]])
                    if container.get(key) != now[container["name"]].get(key)
                )
                yield Finding("workload-changed", container["name"], f"changed: {changed}")
        order = [c["name"] for c in _containers(after, field) if c["name"] in _names(was)]
        if order != [c["name"] for c in was if c["name"] in now]:
            yield Finding("workload-changed", field, f"reordered: {order}")
    spec_was, spec_now = before.get("spec") or {}, after.get("spec") or {}
    volumes = {v["name"]: v for v in spec_now.get("volumes") or []}
    for volume in spec_was.get("volumes") or []:
        if volumes.get(volume["name"]) != volume:
            yield Finding("workload-changed", volume["name"], "volume changed")
    for key in sorted(set(spec_was) | set(spec_now)):
        if key in ("containers", "initContainers", "volumes"):
            continue
        if spec_was.get(key) != spec_now.get(key):
            yield Finding("workload-changed", f"spec.{key}", "pod spec field changed")
    labels_was = (before.get("metadata") or {}).get("labels") or {}
    labels_now = (after.get("metadata") or {}).get("labels") or {}
    for name, value in labels_was.items():
        if labels_now.get(name) != value:
            yield Finding("workload-changed", f"label {name}", "template label changed")


def _gate_waits(container: Mapping[str, Any]) -> bool:
    args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    waits = (_env(container, "LAYERS_SIDECAR_WAIT") or "").lower() in ("1", "true", "yes", "on")
    return "--wait" in args or waits


def _runs(container: Mapping[str, Any], command: str) -> bool:
    args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    return command in args


def restart_after_hard_stop(pod: Mapping[str, Any], ours: set[str]) -> float | None:
    """Seconds from boot until a kill switch at boot makes the kubelet restart (or fail) one of
    our containers; None when it never does."""
    soonest: float | None = None
    for container in _containers(pod, "initContainers") + _containers(pod, "containers"):
        if container["name"] not in ours:
            continue
        seconds: float | None = None
        if not _native(container) and _runs(container, "check") and not _gate_waits(container):
            seconds = 0.0  # check exits 5 at the first answer
        probe = container.get("startupProbe") or {}
        if (probe.get("httpGet") or {}).get("path") == "/readyz":
            seconds = probe.get("initialDelaySeconds", 0) + probe.get(
                "periodSeconds", 10
            ) * probe.get("failureThreshold", 3)
        if seconds is not None and (soonest is None or seconds < soonest):
            soonest = seconds
    return soonest


def judge(kind: str, before_doc: Mapping[str, Any], after_doc: Mapping[str, Any]) -> list[Finding]:
    """Every rule broken by wiring `before_doc` into `after_doc` (empty: the wiring is sound)."""
    before, after = template(before_doc), template(after_doc)
    assert before is not None, f"{kind} has no pod template"
    if after is None:
        return [Finding("not-wired", kind, "no pod template in the output")]
    names = _names(_containers(before, "containers") + _containers(before, "initContainers"))
    ours = _names(_containers(after, "containers") + _containers(after, "initContainers")) - names
    if not ours:
        return [Finding("not-wired", kind, "nothing of layers-readiness added")]
    findings = [*key_findings(after, ours), *port_findings(before, after)]
    findings += unchanged_findings(before, after)
    seconds = restart_after_hard_stop(after, ours)
    if seconds is not None:
        findings.append(
            Finding(
                "restart-on-hard-stop", kind, f"a kill switch at boot restarts after {seconds:g}s"
            )
        )
    if kind in JOB_KINDS:
        regular = [c["name"] for c in _containers(after, "containers") if c["name"] in ours]
        if regular:
            findings.append(Finding("job-never-ends", kind, f"long-running containers {regular}"))
    return sorted(findings)


def without_labels(doc: Mapping[str, Any], *names: str) -> Obj:
    """A copy of `doc` without the given labels on the workload (the opt-in label a recipe adds)."""
    copied: Obj = copy.deepcopy(dict(doc))
    labels = (copied.get("metadata") or {}).get("labels") or {}
    for name in names:
        labels.pop(name, None)
    return copied
