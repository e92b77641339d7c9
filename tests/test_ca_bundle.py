"""A private CA bundle, mounted the way the chart's values say, is what the sidecar trusts.

Networks that intercept TLS present their own CA. The chart mounts a bundle with `extraVolumes`
and `extraVolumeMounts` and points `SSL_CERT_FILE` at it (`ci/platform-values.yaml`). Here the
sidecar container of that scenario runs as written against the emulator behind a TLS proxy whose
certificate a throwaway CA (made in process by trustme) signed: with the bundle at the mounted
path it answers ready; without it, every poll is a TLS failure (`network_error`) and it never is.

Substituted, as in tests/test_manifests_run.py: the API URL (the proxy), the key file (a fake
key), the listen address, and the mount's root (a temporary directory standing for `/`). The
ConfigMap of `extraEnvFrom` does not exist here and is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.k8s import CHART_DIR, Obj, container, pod_spec, render_chart
from tests.support import (
    FAKE_KEY,
    Process,
    certificates,
    clean_env,
    emulator,
    free_port,
    pipe,
    start,
    stream_server,
    wait_for,
)

SIDECAR = "layers-readiness-serve"


@contextlib.contextmanager
def tls_proxy(upstream_port: int, cert: Path, key: Path) -> Iterator[str]:
    """https://127.0.0.1:<port> terminating TLS in front of http://127.0.0.1:<upstream_port>."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", upstream_port), timeout=5
            )
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    with stream_server(handle, ssl=context) as port:
        yield f"https://127.0.0.1:{port}"


def platform_sidecar() -> tuple[Obj, Obj]:
    values = yaml.safe_load((CHART_DIR / "ci" / "platform-values.yaml").read_text())
    objects = [o for objs in render_chart(values).values() for o in objs]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    spec = pod_spec(deployment)
    return spec, container(spec, SIDECAR)


def sidecar_env(c: Obj, root: Path, api_url: str, port: int, *, bundle: bool) -> dict[str, str]:
    env = {item["name"]: item["value"] for item in c["env"]}
    key_file = root / env["LAYERS_API_KEY_FILE"].lstrip("/")
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(FAKE_KEY)
    env.update(
        LAYERS_API_URL=api_url,
        LAYERS_API_KEY_FILE=str(key_file),
        LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
        LAYERS_SIDECAR_INTERVAL="200ms",
    )
    if bundle:
        env["SSL_CERT_FILE"] = str(root / env["SSL_CERT_FILE"].lstrip("/"))
    else:
        del env["SSL_CERT_FILE"]
    return clean_env(**env)


def polled(process: Process) -> dict[str, Any] | None:
    status: dict[str, Any] = process.get("/status").json()
    return status if status.get("lastOutcome") else None


def ready(process: Process) -> bool:
    return process.get("/readyz").status == 200


def test_the_mounted_ca_bundle_is_what_the_sidecar_trusts(tmp_path: Path) -> None:
    spec, c = platform_sidecar()
    written = {item["name"]: item["value"] for item in c["env"]}
    bundle_path = written["SSL_CERT_FILE"]
    # SSL_CERT_FILE points into a volume the container mounts, and that volume is in the pod
    (mount,) = [m for m in c["volumeMounts"] if bundle_path.startswith(m["mountPath"] + "/")]
    assert mount["name"] in {v["name"] for v in spec["volumes"]}

    pki = tmp_path / "pki"
    pki.mkdir()
    tls = certificates(pki)
    ca, cert, key = tls.ca, tls.cert, tls.key
    root = tmp_path / "pod"
    (root / bundle_path.lstrip("/")).parent.mkdir(parents=True)
    (root / bundle_path.lstrip("/")).write_bytes(ca.read_bytes())

    with emulator(tmp_path) as em, tls_proxy(int(em.url.rsplit(":", 1)[1]), cert, key) as url:
        for bundle in (True, False):
            port = free_port()
            process = start(
                c["args"],
                env=sidecar_env(c, root, url, port, bundle=bundle),
                tmp=tmp_path,
                name=f"sidecar-bundle-{bundle}",
                url=f"http://127.0.0.1:{port}",
                ready_path="/livez",
            )
            try:
                status = wait_for(
                    functools.partial(polled, process),
                    timeout=15,
                    what="the first poll through the TLS proxy",
                )
                if bundle:
                    wait_for(
                        functools.partial(ready, process),
                        timeout=15,
                        what="ready with the mounted CA bundle",
                    )
                else:
                    assert status["lastOutcome"] == "network_error", status
                    assert process.get("/readyz").status == 503
            finally:
                process.stop()
