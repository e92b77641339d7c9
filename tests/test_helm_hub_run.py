"""The chart's fleet defaults, run as rendered: HTTPS with the certificate the chart generated, the
hub and a wired sidecar started from one environment, a kill switch seen within the figure the
docs print.

`helm install --set hub.enabled=true` and nothing else: the hub serves the certificate of the
Secret the chart rendered (taken from the rendering, as the kubelet would project it), the
sidecar trusts the CA of that Secret through SSL_CERT_DIR, and calls the hub by the Service's
name, which a CONNECT proxy on loopback (HTTPS_PROXY) leads to the local hub: the name the
certificate is checked against is the one the manifest declares, nothing is relaxed.

The hub's and the sidecar's variables are merged into one environment, as one ConfigMap would
give them, and both processes get all of it: the hub reads its LAYERS_HUB_* variables, the
sidecar the shared ones. Substituted as in tests/test_manifests_run.py: the real API (the
emulator), the listen addresses (loopback), the key file, and the mount roots (a temporary
directory standing for `/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.values import parse_duration
from tests.k8s import (
    Obj,
    container,
    container_env,
    pod_spec,
    render_chart,
    secret_value,
)
from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    Process,
    clean_env,
    command,
    emulator,
    free_port,
    pipe,
    start,
    stream_server,
    wait_for,
)

pytestmark = pytest.mark.e2e

HUB = "layers-readiness-hub"
SERVE = "layers-readiness-serve"
REAL_API = "https://api.layers.com"


@dataclass
class Tunnel:
    """An HTTP CONNECT proxy that leads every tunnel to one local port; records the targets."""

    url: str
    targets: list[str] = field(default_factory=list)


@contextlib.contextmanager
def connect_proxy(to_port: int) -> Iterator[Tunnel]:
    tunnel = Tunnel("")

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        head = await client_r.readuntil(b"\r\n\r\n")
        method, target, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
        if method != "CONNECT":
            client_w.close()
            return
        tunnel.targets.append(target)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", to_port)
        except OSError:
            client_w.close()
            return
        client_w.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    with stream_server(handle) as port:
        tunnel.url = f"http://127.0.0.1:{port}"
        yield tunnel


def project(spec: Obj, objects: list[Obj], c: Obj, root: Path) -> None:
    """Writes under `root` the files of every Secret volume `c` mounts, as the kubelet would."""
    volumes = {v["name"]: v for v in spec["volumes"]}
    secrets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Secret"}
    for mount in c.get("volumeMounts") or []:
        source = volumes[mount["name"]].get("secret")
        if source is None or source["secretName"] not in secrets:
            continue
        directory = root / mount["mountPath"].lstrip("/")
        directory.mkdir(parents=True, exist_ok=True)
        for item in source["items"]:
            value = secret_value(secrets[source["secretName"]], item["key"])
            (directory / item["path"]).write_text(value)


def rooted(value: str, root: Path, *prefixes: str) -> str:
    """`value` (paths, `:`-separated) with each path under one of `prefixes` moved under `root`."""
    return ":".join(
        str(root / part.lstrip("/")) if part.startswith(prefixes) else part
        for part in value.split(":")
    )


def seconds(text: str) -> float:
    return parse_duration(text)


def hub_upstream_calls(metrics: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "layers_hub_upstream_requests_total":
                total += sample.value
    return total


def https_get(port: int, host: str, ca: Path, path: str) -> str:
    """GET `path` from 127.0.0.1:`port`, checking the certificate for `host` against `ca`."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        chunks = []
        while chunk := tls.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


@pytest.fixture(scope="module")
def fleet() -> list[Obj]:
    """`--set hub.enabled=true`, nothing else."""
    return [o for objs in render_chart({"hub": {"enabled": True}}).values() for o in objs]


def deployment(objects: list[Obj], name: str) -> Obj:
    (found,) = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return found


def test_the_default_fleet_is_tls_end_to_end_and_sees_a_kill_switch_in_time(
    fleet: list[Obj], tmp_path: Path
) -> None:
    hub_spec = pod_spec(deployment(fleet, "demo-layers-readiness-hub"))
    app_spec = pod_spec(deployment(fleet, "demo-layers-readiness"))
    hub_c, serve_c = container(hub_spec, HUB), container(app_spec, SERVE)
    hub_env, serve_env = container_env(fleet, hub_c), container_env(fleet, serve_c)

    # One environment for both, as one ConfigMap would give: no variable means two things.
    shared = set(hub_env) & set(serve_env)
    assert {k: hub_env[k] for k in shared} == {k: serve_env[k] for k in shared}
    env = clean_env(**(hub_env | serve_env))
    env.pop("SSL_CERT_FILE", None)  # the image sets none; the machine's must not help

    declared = env["LAYERS_API_URL"]
    assert declared.startswith("https://"), "the hub must be HTTPS by default"
    host_port = declared.removeprefix("https://")
    host = host_port.rsplit(":", 1)[0]

    # The files the kubelet would project: the hub's certificate and key, the sidecar's CA.
    root = tmp_path / "root"
    project(hub_spec, fleet, hub_c, root)
    project(app_spec, fleet, serve_c, root)
    (key_file := root / env["LAYERS_API_KEY_FILE"].lstrip("/")).parent.mkdir(parents=True)
    key_file.write_text(FAKE_KEY)
    for name in ("LAYERS_HUB_TLS_CERT_FILE", "LAYERS_HUB_TLS_KEY_FILE", "LAYERS_API_KEY_FILE"):
        env[name] = rooted(env[name], root, "/var/run", "/etc/layers-readiness")
    # The hub's CA beside the image's roots (which the fallback, Layers itself, needs).
    assert env["SSL_CERT_DIR"].endswith(":/etc/ssl/certs")
    env["SSL_CERT_DIR"] = rooted(env["SSL_CERT_DIR"], root, "/var/run")
    ca_dir = Path(env["SSL_CERT_DIR"].split(":")[0])
    (ca_file,) = ca_dir.iterdir()

    # The figures the defaults give, from the rendered values.
    interval = seconds(env["LAYERS_SIDECAR_INTERVAL"])
    ttl, hub_timeout = seconds(env["LAYERS_HUB_TTL"]), seconds(env["LAYERS_HUB_TIMEOUT"])
    assert (interval, ttl, hub_timeout) == (5, 5, 5)
    bound = interval + ttl + hub_timeout

    hub_port, serve_port = free_port(), free_port()
    with emulator(tmp_path) as em, connect_proxy(hub_port) as proxy:
        assert env["LAYERS_HUB_API_URL"] == REAL_API
        assert env["LAYERS_FALLBACK_API_URL"] == REAL_API
        env.update(
            LAYERS_HUB_API_URL=em.url,
            LAYERS_FALLBACK_API_URL=em.url,
            LAYERS_HUB_LISTEN=f"127.0.0.1:{hub_port}",
            LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{serve_port}",
            # The Service's name leads to the local hub; loopback (the emulator) is direct.
            HTTPS_PROXY=proxy.url,
            NO_PROXY="127.0.0.1",
        )
        out, err = tmp_path / "hub.stdout", tmp_path / "hub.stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            hub_proc = subprocess.Popen(
                command("hub"), env=env, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
            )
        hub = Process(hub_proc, out, err, f"https://{host_port}")
        sidecar: Process | None = None
        try:
            # The hub serves the generated certificate for the Service's name, which its CA
            # (as the sidecar mounts it) verifies.
            wait_for(
                lambda: "200 OK" in https_get(hub_port, host, ca_file, "/readyz"),
                timeout=20,
                what="the hub over HTTPS",
            )
            sidecar = start(
                ["serve"],
                env=env,
                tmp=tmp_path,
                name="serve",
                url=f"http://127.0.0.1:{serve_port}",
                ready_path="/livez",
            )
            wait_for(lambda: sidecar.get("/readyz").status == 200, timeout=30, what="ready")
            assert proxy.targets
            assert set(proxy.targets) == {host_port}
            metrics = https_get(hub_port, host, ca_file, "/metrics").split("\r\n\r\n", 1)[1]
            # Every upstream call went through the hub: no poll needed the fallback.
            assert hub_upstream_calls(metrics) == em.stats()["whoamiRequests"] >= 1

            em.set(killSwitch=True)
            flipped = time.monotonic()
            wait_for(
                lambda: sidecar.get("/readyz").status == 503,
                timeout=bound + 10,
                what="the kill switch through the hub",
            )
            seen = time.monotonic() - flipped
            assert sidecar.get("/status").json()["lastOutcome"] == "kill_switch"
            assert seen <= bound, f"kill switch seen after {seen:.1f}s, bound {bound}s"
            print(f"kill switch seen through the hub after {seen:.2f}s (bound {bound:.0f}s)")
        finally:
            if sidecar is not None:
                sidecar.stop()
            hub.stop()
        for process in (hub, sidecar):
            assert process is not None
            assert FAKE_SECRET not in process.stdout + process.stderr
