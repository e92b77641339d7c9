"""Kubernetes objects for the tests: the chart rendered by the real Helm engine, `deploy/` built by
`kubectl kustomize`, and both validated against the Kubernetes API schemas.

- Rendering uses `helm-python-sdk` (Helm v4's Go engine through its C library): the same template
  engine, values coalescing and `values.schema.json` check as `helm template` / `helm install`.
- Built-in kinds are validated with `kubernetes-validate` in strict mode (unknown fields fail)
  for every version in `K8S_VERSIONS`: 1.29, the first with native sidecars on by default, and
  the newest schema set the installed kubernetes-validate ships.
- CRD kinds (PodMonitor, PrometheusRule from monitoring.coreos.com) have no schema in
  kubernetes-validate. They are validated against `crd-schemas/monitoring.coreos.com_v1.json`,
  strict subsets of the Prometheus Operator's CRDs; their `metadata` and label selectors use the
  Kubernetes definitions of the same version. Any other kind without a schema fails loudly.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import referencing
import yaml
from kubernetes_validate import utils as kv_utils

ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = ROOT / "helm" / "layers-readiness"
DEPLOY_DIR = ROOT / "deploy"
CRD_SCHEMAS = Path(__file__).resolve().parent / "crd-schemas" / "monitoring.coreos.com_v1.json"
CERT_MANAGER_SCHEMAS = Path(__file__).resolve().parent / "crd-schemas" / "cert-manager.io_v1.json"

Obj = dict[str, Any]

# The image's fixed numeric user and group (Dockerfile `USER`); manifests run as the same.
IMAGE_UID = 65532

OLDEST_K8S = "1.29"  # native sidecars (restartPolicy: Always on an init container) on by default


def newest_k8s() -> str:
    """The newest Kubernetes minor version kubernetes-validate has schemas for."""
    return str(kv_utils.major_minor(kv_utils.latest_version()))


K8S_VERSIONS: tuple[str, ...] = (OLDEST_K8S, newest_k8s())

CRD_KINDS = {
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
}

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


# --- building -----------------------------------------------------------------------------------


def load_documents(text: str) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def render_chart(
    values: Mapping[str, Any] | None = None, *, name: str = "demo", namespace: str = "apps"
) -> dict[str, list[Obj]]:
    """The chart rendered offline by Helm's engine: template path -> objects (NOTES excluded)."""
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(dict(values or {}), name=name, namespace=namespace)
    return {
        path: load_documents(text)
        for path, text in rendered.items()
        if not path.endswith("NOTES.txt") and text.strip()
    }


def render_notes(values: Mapping[str, Any] | None = None, *, name: str = "demo") -> str:
    import helm_python

    with helm_python.Chart.load(CHART_DIR) as chart:
        rendered: dict[str, str] = chart.render(dict(values or {}), name=name, namespace="apps")
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def kustomize(directory: Path) -> list[Obj]:
    """`kubectl kustomize DIR`, as a user runs it."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return load_documents(result.stdout)


def kustomizations(root: Path = DEPLOY_DIR) -> list[Path]:
    """Every directory under `root` that `kubectl kustomize` can build (Components are not)."""
    found = []
    for file in sorted(root.rglob("kustomization.yaml")):
        document = yaml.safe_load(file.read_text()) or {}
        if document.get("kind", "Kustomization") == "Kustomization":
            found.append(file.parent)
    return found


# --- validating ---------------------------------------------------------------------------------


@cache
def _k8s_definitions(version: str) -> Any:
    """kubernetes-validate's `_definitions.json` for `version` (strict flavour)."""
    schema_version = next(
        v for v in reversed(kv_utils.all_versions()) if kv_utils.major_minor(v) <= version
    )
    return kv_utils.schema_contents(
        f"kubernetes-json-schema/v{schema_version}-local-strict/_definitions.json", version
    )


@cache
def _crd_validator(version: str, kind: str) -> jsonschema.protocols.Validator:
    source = CERT_MANAGER_SCHEMAS if kind in ("Certificate", "Issuer") else CRD_SCHEMAS
    schemas = json.loads(source.read_text())
    definitions = referencing.Resource.from_contents(_k8s_definitions(version))
    registry: referencing.Registry[Any] = referencing.Registry().with_resource(
        "https://kubernetes.io/api/_definitions.json", definitions
    )
    schema = {"$schema": schemas["$schema"], "$defs": schemas["$defs"], "$ref": f"#/$defs/{kind}"}
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=registry
    )
    return validator


def validate(obj: Obj, version: str) -> None:
    """Raises AssertionError naming the object and the first schema violation."""
    what = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} against Kubernetes {version}"
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_KINDS:
        errors = sorted(_crd_validator(version, str(obj["kind"])).iter_errors(obj), key=str)
        assert not errors, f"{what}: {errors[0].json_path}: {errors[0].message}"
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(part) for part in error.path)
        raise AssertionError(f"{what}: {path}: {error.message}") from None
    except kv_utils.SchemaNotFoundError as error:
        raise AssertionError(f"{what}: no schema ({error.message})") from None


# --- reading pods -------------------------------------------------------------------------------


def pod_spec(obj: Obj) -> Obj:
    kind = obj["kind"]
    if kind == "Pod":
        spec: Obj = obj["spec"]
        return spec
    assert kind in WORKLOAD_KINDS, kind
    template_spec: Obj = obj["spec"]["template"]["spec"]
    return template_spec


def workloads(objects: list[Obj]) -> list[Obj]:
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS or o["kind"] == "Pod"]


def all_containers(spec: Obj) -> Iterator[tuple[str, Obj]]:
    """("init", c) for init containers, then ("main", c) for containers."""
    for container in spec.get("initContainers") or []:
        yield "init", container
    for container in spec.get("containers") or []:
        yield "main", container


def container(spec: Obj, name: str) -> Obj:
    for _, found in all_containers(spec):
        if found["name"] == name:
            return found
    raise AssertionError(f"no container {name!r} in the pod spec")


def env_value(c: Obj, name: str) -> str | None:
    for item in c.get("env") or []:
        if item["name"] == name:
            value: str = item["value"]
            return value
    return None


def container_env(objects: list[Obj], c: Obj) -> dict[str, str]:
    """The variables `c` starts with, as the kubelet sets them: `envFrom` ConfigMaps (found among
    `objects`) first, then `env`, which wins. Values from Secrets (`valueFrom`, `secretRef`) are
    refused: the key must come from a mounted file, and nothing else here is secret."""
    env: dict[str, str] = {}
    for source in c.get("envFrom") or []:
        assert set(source) <= {"configMapRef", "prefix"}, f"{c['name']}: envFrom {source}"
        name = source["configMapRef"]["name"]
        found = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
        assert found, f"{c['name']}: no ConfigMap {name!r} for envFrom"
        for key, value in (found[0].get("data") or {}).items():
            env[source.get("prefix", "") + key] = value
    for item in c.get("env") or []:
        assert "valueFrom" not in item, f"{c['name']}: {item['name']} comes from valueFrom"
        env[item["name"]] = item["value"]
    return env


def resolve_port(c: Obj, port: int | str) -> int:
    """A probe's port as the kubelet resolves it: a number, or the name of one of `c`'s ports."""
    if isinstance(port, int):
        return port
    for declared in c.get("ports") or []:
        if declared.get("name") == port:
            number: int = declared["containerPort"]
            return number
    raise AssertionError(f"container {c['name']!r} declares no port named {port!r}")


def secret_file(objects: list[Obj], spec: Obj, c: Obj, path: str) -> tuple[Obj, str] | None:
    """For a file path inside `c`, the Secret volume mounted there and the Secret key it shows.

    Follows volumeMounts -> volume -> Secret (and its `items`) the way the kubelet lays the
    files out. Returns (secret object or a stub if not among `objects`, key)."""
    for mount in c.get("volumeMounts") or []:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        assert "subPath" not in mount, "a subPath mount never sees a rotated Secret"
        relative = path[len(prefix) :]
        volume = next(v for v in spec.get("volumes") or [] if v["name"] == mount["name"])
        source = volume["secret"]
        key = relative
        for item in source.get("items") or []:
            if item["path"] == relative:
                key = item["key"]
        secret = next(
            (
                o
                for o in objects
                if o["kind"] == "Secret" and o["metadata"]["name"] == source["secretName"]
            ),
            {"kind": "Secret", "metadata": {"name": source["secretName"]}, "data": {}},
        )
        return secret, key
    return None


def secret_value(secret: Obj, key: str) -> str:
    if key in (secret.get("stringData") or {}):
        value: str = secret["stringData"][key]
        return value
    return base64.b64decode(secret["data"][key]).decode()


# --- selectors ----------------------------------------------------------------------------------


def selects(selector: Obj | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes LabelSelector matches `labels` (an empty selector matches all)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def pod_labels(workload: Obj) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels") or {}
    return labels


def admits(
    policy: Obj, *, labels: Mapping[str, str], namespace_labels: Mapping[str, str], same: bool
) -> bool:
    """Whether a NetworkPolicy's ingress admits a pod with `labels`, in a namespace with
    `namespace_labels` (`same`: the policy's own namespace). Ports are not considered."""
    for rule in policy["spec"].get("ingress") or []:
        peers = rule.get("from")
        if peers is None:
            return True
        for peer in peers:
            if "ipBlock" in peer:
                continue
            if "namespaceSelector" in peer:
                namespace_ok = selects(peer["namespaceSelector"], namespace_labels)
            else:
                namespace_ok = same
            if namespace_ok and selects(peer.get("podSelector"), labels):
                return True
    return False


def parent_chart(
    directory: Path, *, values: str, deployment: str, app_version: str | None = None
) -> Path:
    """A user's chart `shop` under `directory`, with layers-readiness as a dependency (a copy of
    this chart), the given values.yaml and one templates/deployment.yaml."""
    root = directory / "shop"
    (root / "templates").mkdir(parents=True)
    version = f"appVersion: '{app_version}'\n" if app_version else ""
    (root / "Chart.yaml").write_text(
        "apiVersion: v2\nname: shop\nversion: 1.0.0\n"
        + version
        + "dependencies:\n  - name: layers-readiness\n    version: 0.1.0\n"
    )
    (root / "values.yaml").write_text(values)
    (root / "templates" / "deployment.yaml").write_text(deployment)
    shutil.copytree(CHART_DIR, root / "charts" / "layers-readiness")
    return root
