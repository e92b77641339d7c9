"""The one wiring of a pod template: plain dicts in, plain dicts out, nothing else touched.

`wire(template, options)` adds the `check` gate and the `serve` sidecar to a pod template (the
`{metadata, spec}` of a workload's `spec.template`, or a Pod itself) exactly as the chart's
templates and the kustomize components do. `inject` (offline manifests) and the `injector`
webhook both call it, so the three can never drift apart. It never mutates its input.

The choices, each made once here:
- the port is the requested one, or the smallest above it that no container or init container
  of the pod declares or probes (deterministic, so wiring twice gives the same port);
- a pod that runs to completion (restartPolicy Never or OnFailure: every Job's and CronJob's)
  never gets a classic `serve` container, which would keep it running after its work is done;
- a template already holding `layers-readiness-check` is returned unchanged (wiring twice is
  wiring once), as is one annotated `layers-readiness/inject: "false"`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final

from .. import __version__

# The image a local build and `make release` name while the project has no public home (the
# chart's image.registry default too); --image / LAYERS_INJECT_IMAGE names your registry's copy.
IMAGE_REGISTRY: Final = "localhost"
DEFAULT_IMAGE: Final = f"{IMAGE_REGISTRY}/layers-readiness:{__version__}"

DEFAULT_PORT: Final = 9476
PORT_NAME: Final = "layers-http"
# Names of a Secret and of its key, not secrets.
DEFAULT_SECRET: Final = "layers-api-key"  # noqa: S105
DEFAULT_SECRET_KEY: Final = "api-key"  # noqa: S105
DEFAULT_API_URL: Final = "https://api.layers.com"

CHECK: Final = "layers-readiness-check"
SERVE: Final = "layers-readiness-serve"
VOLUME: Final = "layers-readiness-api-key"
MOUNT_PATH: Final = "/etc/layers-readiness"
# 0444: Secret-volume files are root-owned, and group-owned by fsGroup only when the pod sets
# one; world-readable is what lets uid 65532 read the key whatever the pod's securityContext.
KEY_FILE_MODE: Final = 0o444

ANNOTATION_PREFIX: Final = "layers-readiness/"
INJECT: Final = ANNOTATION_PREFIX + "inject"
MODE: Final = ANNOTATION_PREFIX + "mode"
SECRET: Final = ANNOTATION_PREFIX + "secret"
PORT: Final = ANNOTATION_PREFIX + "port"
WIRED_LABEL: Final = ANNOTATION_PREFIX + "wired"

MODES: Final = ("native", "classic")
RUN_TO_COMPLETION: Final = frozenset({"Never", "OnFailure"})

SECURITY_CONTEXT: Final[Mapping[str, Any]] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESOURCES: Final[Mapping[str, Any]] = {
    "requests": {"cpu": "10m", "memory": "48Mi"},
    "limits": {"memory": "128Mi"},
}
# (probe, path, periodSeconds, timeoutSeconds, failureThreshold). The startup probe is on /livez,
# never /readyz: a kill switch at boot must not get the sidecar restarted (the gate already
# held the pod until the key was healthy).
PROBES: Final = (
    ("startupProbe", "/livez", 1, 2, 30),
    ("readinessProbe", "/readyz", 2, 2, 2),
    ("livenessProbe", "/livez", 10, 2, 3),
)


def _copy(value: Any) -> Any:
    """A deep copy of JSON's data model (objects, arrays, immutable scalars): what manifests
    and admission reviews are. Several times faster than copy.deepcopy, which dominated the
    webhook's time per review."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


class WiringError(ValueError):
    """A template or an annotation that cannot be wired; `str()` is one line."""


@dataclass(frozen=True)
class Wiring:
    """The options of a wiring. The settings below `api_url` are passed on to the injected
    containers as their variables, each as the operator wrote it; None leaves it out."""

    mode: str = "native"
    secret: str = DEFAULT_SECRET
    secret_key: str = DEFAULT_SECRET_KEY
    image: str = DEFAULT_IMAGE
    port: int = DEFAULT_PORT
    api_url: str = DEFAULT_API_URL
    fallback_api_url: str | None = None
    interval: str | None = None
    stale_after: str | None = None
    min_credits: str | None = None
    # `serve` alone reads it (how often Layers is called while the hub gives no answer).
    fallback_interval: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise WiringError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not 1 <= self.port <= 65535:
            raise WiringError(f"port {self.port} is not between 1 and 65535")
        if not self.secret or not self.secret_key:
            raise WiringError("the Secret's name and key must not be empty")

    @classmethod
    def of(cls, options: Wiring | Mapping[str, Any] | None) -> Wiring:
        """A Wiring from itself, from a plain dict of its field names, or the defaults."""
        if isinstance(options, Wiring):
            return options
        known = {f.name for f in fields(cls)}
        unknown = set(options or {}) - known
        if unknown:
            raise WiringError(f"unknown wiring options: {', '.join(sorted(unknown))}")
        return cls(**dict(options or {}))

    def env(self) -> list[dict[str, str]]:
        """The variables both injected containers get, in this order."""
        env = [
            {"name": "LAYERS_API_KEY_FILE", "value": f"{MOUNT_PATH}/{self.secret_key}"},
            {"name": "LAYERS_API_URL", "value": self.api_url},
        ]
        passed_on = (
            ("LAYERS_FALLBACK_API_URL", self.fallback_api_url),
            ("LAYERS_SIDECAR_INTERVAL", self.interval),
            ("LAYERS_SIDECAR_STALE_AFTER", self.stale_after),
            ("LAYERS_SIDECAR_MIN_CREDITS", self.min_credits),
        )
        env.extend({"name": name, "value": value} for name, value in passed_on if value)
        return env


def _annotations(template: Mapping[str, Any]) -> Mapping[str, Any]:
    metadata = template.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise WiringError("metadata is not an object")
    annotations = metadata.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise WiringError("metadata.annotations is not an object")
    return annotations


def opted_out(template: Mapping[str, Any]) -> bool:
    return str(_annotations(template).get(INJECT, "")).strip().lower() == "false"


def opted_in(template: Mapping[str, Any]) -> bool:
    return str(_annotations(template).get(INJECT, "")).strip().lower() == "true"


def _containers(spec: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    found = spec.get(key) or []
    if not isinstance(found, list) or not all(isinstance(c, Mapping) for c in found):
        raise WiringError(f"spec.{key} is not a list of containers")
    return found


def is_wired(template: Mapping[str, Any]) -> bool:
    spec = template.get("spec") or {}
    return isinstance(spec, Mapping) and any(
        c.get("name") == CHECK for c in _containers(spec, "initContainers")
    )


def _probe_ports(container: Mapping[str, Any]) -> Iterator[Any]:
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        handler = container.get(probe)
        if not isinstance(handler, Mapping):
            continue
        for action in ("httpGet", "tcpSocket", "grpc"):
            target = handler.get(action)
            if isinstance(target, Mapping):
                yield target.get("port")


def used_ports(spec: Mapping[str, Any]) -> set[int]:
    """Every port a container or init container of the pod declares or probes by number (a
    probe by name points at a declared port, already counted)."""
    used: set[int] = set()
    for key in ("initContainers", "containers"):
        for container in _containers(spec, key):
            ports = container.get("ports") or []
            for declared in ports if isinstance(ports, list) else []:
                if isinstance(declared, Mapping):
                    used.update(
                        p
                        for p in (declared.get("containerPort"), declared.get("hostPort"))
                        if isinstance(p, int)
                    )
            for port in _probe_ports(container):
                if isinstance(port, int):
                    used.add(port)
                elif isinstance(port, str) and port.isdigit():
                    used.add(int(port))
    return used


def choose_port(spec: Mapping[str, Any], wanted: int) -> int:
    """`wanted`, or the smallest port above it that the pod neither declares nor probes."""
    used = used_ports(spec)
    port = wanted
    while port in used:
        port += 1
    if port > 65535:
        raise WiringError(f"no free port from {wanted} up to 65535 in this pod")
    return port


def _overridden(template: Mapping[str, Any], options: Wiring) -> Wiring:
    """The options with this template's own annotations applied."""
    annotations = _annotations(template)
    changes: dict[str, Any] = {}
    if MODE in annotations:
        changes["mode"] = str(annotations[MODE]).strip().lower()
    if SECRET in annotations:
        changes["secret"] = str(annotations[SECRET]).strip()
    if PORT in annotations:
        text = str(annotations[PORT]).strip()
        if not text.isdigit():
            raise WiringError(f"annotation {PORT}: {text!r} is not a port number")
        changes["port"] = int(text)
    try:
        return replace(options, **changes)
    except WiringError as error:
        raise WiringError(f"annotations: {error}") from None


def _probe(path: str, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _container(name: str, args: list[str], options: Wiring, **between: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": options.image,
        "imagePullPolicy": "IfNotPresent",
        "args": args,
        "env": options.env(),
        **between,
        "volumeMounts": [{"name": VOLUME, "mountPath": MOUNT_PATH, "readOnly": True}],
        "resources": _copy(dict(RESOURCES)),
        "securityContext": _copy(dict(SECURITY_CONTEXT)),
    }


def check_container(options: Wiring) -> dict[str, Any]:
    """The gate: an init container that holds the pod until the key is healthy. Should it end
    in error (a deadline set, a key it cannot read), its last log line, the verdict, becomes the
    termination message `kubectl describe pod` shows, as with the chart's and the components'."""
    gate = _container(CHECK, ["check", "--wait"], options)
    gate["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return gate


def serve_container(options: Wiring, port: int, *, native: bool) -> dict[str, Any]:
    probes = {probe: _probe(path, *timing) for probe, path, *timing in PROBES}
    container = _container(
        SERVE,
        ["serve"],
        options,
        ports=[{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        **probes,
    )
    container["env"].append({"name": "LAYERS_SIDECAR_LISTEN", "value": f"0.0.0.0:{port}"})
    if options.fallback_interval:
        container["env"].append(
            {"name": "LAYERS_FALLBACK_INTERVAL", "value": options.fallback_interval}
        )
    if native:
        container["restartPolicy"] = "Always"
    return container


def volume(options: Wiring) -> dict[str, Any]:
    # The whole Secret, no items: only then does the kubelet update the file on rotation.
    return {
        "name": VOLUME,
        "secret": {"secretName": options.secret, "defaultMode": KEY_FILE_MODE},
    }


def wire(
    template: Mapping[str, Any], options: Wiring | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`template` wired (a deep copy; the input is never changed). Unchanged when it is already
    wired or opted out. Raises WiringError for a template that is not a pod template's shape or
    an annotation that cannot be used."""
    if not isinstance(template, Mapping):
        raise WiringError("the pod template is not an object")
    wired: dict[str, Any] = _copy(dict(template))
    if opted_out(template) or is_wired(template):
        return wired
    spec = wired.get("spec")
    if not isinstance(spec, dict):
        raise WiringError("the pod template has no spec")
    resolved = _overridden(template, Wiring.of(options))
    port = choose_port(spec, resolved.port)
    native = resolved.mode == "native"
    completes = spec.get("restartPolicy", "Always") in RUN_TO_COMPLETION

    ours = [check_container(resolved)]
    if native:
        ours.append(serve_container(resolved, port, native=True))
    spec["initContainers"] = ours + list(_containers(spec, "initContainers"))
    if not native and not completes:
        spec["containers"] = [
            *_containers(spec, "containers"),
            serve_container(resolved, port, native=False),
        ]
    volumes = spec.get("volumes") or []
    if not isinstance(volumes, list):
        raise WiringError("spec.volumes is not a list")
    spec["volumes"] = [*volumes, volume(resolved)]

    metadata = wired.get("metadata") or {}
    wired["metadata"] = metadata
    labels = metadata.get("labels") or {}
    if not isinstance(labels, dict):
        raise WiringError("metadata.labels is not an object")
    metadata["labels"] = {**labels, WIRED_LABEL: "true"}
    return wired
