"""The chart's templates and the kustomize components wire a pod exactly as the pure function
`wire()` (sidecar/injector/wiring.py, what `inject` and the webhook run) does: for each mode and
each foreign workload (tests/workloads/, every kind), container by container.

Compared exactly: the containers' names and places (ours first among the init containers, the
classic sidecar after the workload's containers, none in a Job's pod in classic mode), and every
field of each container of ours (image, imagePullPolicy, args, ports, probes, securityContext,
resources, volumeMounts, restartPolicy, terminationMessagePolicy), the key's volume, the pod
label, and everything of the workload's own.

Normalised, each for a reason that leaves what the kubelet runs unchanged:
- the environment is compared as the settings the program reads from it (`sidecar.commands.load`
  over the variables the kubelet sets), not as a list: the components take LAYERS_API_URL from a
  generated ConfigMap (`envFrom`: its hashed name rolls the pods when the URL changes), and the
  chart writes out every setting its values hold, defaults included (`values.yaml` documents
  each), where `wire()` passes on only what differs from the program's defaults. A variable the
  program does not read, or one given twice, fails the comparison;
- volumes are compared by name: a strategic merge puts the components' volume before the
  workload's, and a pod's volumes are referred to by name only, so their order means nothing.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.commands import COMMANDS, load
from sidecar.injector.wiring import Wiring, wire
from sidecar.settings import OPTIONS, Settings
from tests import kubelet, wiring
from tests.k8s import container_env

Obj = dict[str, Any]

VARIABLES = frozenset(option.env for option in OPTIONS.values())
COMPONENT = {"native": "native-sidecar", "classic": "classic"}
CASES = [(w.stem, mode) for w in wiring.workloads() for mode in wiring.MODES]


def settings_of(container: Obj, objects: list[Obj]) -> Settings:
    """What the container's command (`check` or `serve`) reads from its environment (the
    kubelet's `envFrom` first, then `env`): a variable its command does not read (`wire()` gives
    the gate LAYERS_SIDECAR_STALE_AFTER too) makes no difference."""
    names = [item["name"] for item in container.get("env") or []]
    assert len(names) == len(set(names)), f"{container['name']}: a variable given twice: {names}"
    env = container_env(objects, container)
    unread = sorted(set(env) - VARIABLES)
    assert not unread, f"{container['name']}: variables the program does not read: {unread}"
    return load({}, env, names=COMMANDS[container["args"][0]].options)


def normalised(container: Obj, objects: list[Obj]) -> Obj:
    fields = {k: v for k, v in container.items() if k not in ("env", "envFrom")}
    return {**fields, "env (as read)": settings_of(container, objects)}


def names(spec: Obj, key: str) -> list[str]:
    return [c["name"] for c in spec.get(key) or []]


def assert_agree(got: Obj, want: Obj, objects: list[Obj], source: str) -> None:
    """`got` (a pod template wired by `source`) is `want` (wired by `wire()`), but for the
    normalisations in this module's docstring."""
    assert got["metadata"] == want["metadata"], f"{source}: the pod template's metadata"
    spec, expected = got["spec"], want["spec"]
    for key in ("initContainers", "containers"):
        assert names(spec, key) == names(expected, key), f"{source}: the names in {key}"
        for ours, theirs in zip(spec.get(key) or [], expected.get(key) or [], strict=True):
            if not ours["name"].startswith("layers-readiness-"):
                assert ours == theirs, f"{source}: the workload's {ours['name']} changed"
                continue
            a, b = normalised(ours, objects), normalised(theirs, [])
            differ = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
            assert not differ, f"{source}: {ours['name']} differs in {differ}: " + "; ".join(
                f"{f}: {a.get(f)!r} != {b.get(f)!r}" for f in differ
            )
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    assert len(volumes) == len(spec.get("volumes") or []), f"{source}: a volume given twice"
    assert volumes == {v["name"]: v for v in expected.get("volumes") or []}, f"{source}: volumes"
    rest = {k: v for k, v in spec.items() if k not in ("initContainers", "containers", "volumes")}
    assert rest == {
        k: v for k, v in expected.items() if k not in ("initContainers", "containers", "volumes")
    }, f"{source}: the pod spec"


def template(doc: Obj) -> Obj:
    found = kubelet.template(doc)
    assert found is not None
    return found


def by_wire(workload: Path, options: Wiring) -> Obj:
    return wire(template(wiring.load(workload)), options)


def built(docs: list[Obj], workload: Path) -> Obj:
    (found,) = [d for d in docs if d["kind"] == wiring.load(workload)["kind"]]
    return template(found)


@pytest.mark.parametrize(("workload", "mode"), CASES)
def test_the_components_wire_as_wire_does(workload: str, mode: str, tmp_path: Path) -> None:
    path = wiring.WORKLOADS / f"{workload}.yaml"
    docs = wiring.kustomize_wired(wiring.ROOT, COMPONENT[mode], path, tmp_path)
    # The ConfigMap the containers' envFrom names is among what the build produced.
    assert any(d["kind"] == "ConfigMap" for d in docs)
    assert_agree(built(docs, path), by_wire(path, Wiring(mode=mode)), docs, f"kustomize:{mode}")


@pytest.mark.parametrize(("workload", "mode"), CASES)
def test_the_chart_wires_as_wire_does(workload: str, mode: str, tmp_path: Path) -> None:
    path = wiring.WORKLOADS / f"{workload}.yaml"
    docs = wiring.helm_wired(wiring.ROOT, mode, path, tmp_path, app_probe=False)
    assert_agree(built(docs, path), by_wire(path, Wiring(mode=mode)), [], f"helm:{mode}")


# What a team changes, set both ways: the chart's values and wire()'s options.
CHANGED_VALUES: Obj = {
    "global": {"imageRegistry": "mirror.example"},
    "image": {"tag": "9.9.9"},
    "port": 10001,
    "apiKey": {"secretName": "team-key", "secretKey": "token"},
    "settings": {
        "apiUrl": "https://layers.example",
        "interval": "10s",
        "staleAfter": "2m",
        "minCredits": 5,
    },
}
CHANGED = Wiring(
    image="mirror.example/layers-readiness:9.9.9",
    port=10001,
    secret="team-key",
    secret_key="token",
    api_url="https://layers.example",
    interval="10s",
    stale_after="2m",
    min_credits="5",
)


@pytest.mark.parametrize("mode", wiring.MODES)
@pytest.mark.parametrize("workload", ["nginx-unprivileged", "cronjob"])
def test_the_chart_and_wire_take_the_same_settings_the_same_way(
    workload: str, mode: str, tmp_path: Path
) -> None:
    import helm_python

    path = wiring.WORKLOADS / f"{workload}.yaml"
    wiring.helm_wired(wiring.ROOT, mode, path, tmp_path, app_probe=False)
    values = {"layers-readiness": {**CHANGED_VALUES, "wiring": {"mode": mode}}}
    with helm_python.Chart.load(tmp_path / "parent") as loaded:
        rendered: dict[str, str] = loaded.render(values, name="r", namespace="apps")
    text = next(t for p, t in rendered.items() if p.endswith("templates/workload.yaml"))
    docs = [d for d in yaml.safe_load_all(text) if d]
    want = by_wire(path, dataclasses.replace(CHANGED, mode=mode))
    assert_agree(built(docs, path), want, [], f"helm:{mode} with changed values")


def test_the_comparison_sees_a_difference(tmp_path: Path) -> None:
    """Each normalisation leaves a real difference visible: a changed setting, an unread or a
    doubled variable, a moved volume, a missing terminationMessagePolicy."""
    path = wiring.WORKLOADS / "podinfo.yaml"
    want = by_wire(path, Wiring())
    docs = wiring.kustomize_wired(wiring.ROOT, "native-sidecar", path, tmp_path)

    def fails(change: Any) -> str:
        got = copy.deepcopy(built(docs, path))
        change(got["spec"])
        with pytest.raises(AssertionError) as caught:
            assert_agree(got, want, docs, "kustomize:native")
        return str(caught.value)

    def env(spec: Obj, name: str, value: str) -> None:
        spec["initContainers"][1]["env"].append({"name": name, "value": value})

    assert "env (as read)" in fails(lambda s: env(s, "LAYERS_SIDECAR_INTERVAL", "31s"))
    assert "does not read" in fails(lambda s: env(s, "LAYERS_SIDECAR_INTERVALL", "30s"))
    assert "twice" in fails(lambda s: env(s, "LAYERS_API_KEY_FILE", "/etc/x"))
    assert "volumes" in fails(lambda s: s["volumes"][0]["secret"].update(defaultMode=0o440))
    assert "terminationMessagePolicy" in fails(
        lambda s: s["initContainers"][0].pop("terminationMessagePolicy")
    )
    assert "initContainers" in fails(lambda s: s["initContainers"].reverse())
