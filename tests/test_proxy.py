"""Proxies from the environment, read once: the sidecar and the hub still call through the proxy
HTTP_PROXY names, skip it for NO_PROXY hosts, and never read ~/.netrc on a call.

The proxy is a small forward proxy for http:// URLs on loopback (no CONNECT) that records what
it was asked and relays it to the emulator.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support import (
    FAKE_KEY,
    OTHER_KEY,
    Emulator,
    clean_env,
    command,
    emulator,
    http,
    hub,
)

PROXY_USER, PROXY_PASSWORD = "proxyuser", "FAKEproxypass"


@dataclass
class Seen:
    target: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    url: str
    seen: list[Seen] = field(default_factory=list)


@pytest.fixture
def forward_proxy() -> Iterator[ForwardProxy]:
    recorded: list[Seen] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorded.append(Seen(self.path, self.headers.get("Proxy-Authorization")))
            target = urlsplit(self.path)  # a proxy is asked for the absolute URL
            assert target.hostname is not None
            upstream = HTTPConnection(target.hostname, target.port, timeout=5)
            headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
            upstream.request("GET", target.path, headers=headers)
            answer = upstream.getresponse()
            body = answer.read()
            upstream.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ForwardProxy(f"http://127.0.0.1:{server.server_address[1]}", recorded)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as running:
        running.set(rateLimitPerMinute=1_000_000)
        yield running


def proxy_env(proxy: str, no_proxy: str = "", **extra: str) -> dict[str, str]:
    """The environment with exactly this proxy setting: none inherited, in either case."""
    env = {k: v for k, v in clean_env(**extra).items() if not k.lower().endswith("_proxy")}
    env["HTTP_PROXY"] = proxy
    env["NO_PROXY"] = no_proxy
    return env


def with_credentials(proxy: str) -> str:
    return proxy.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")


def check(api_url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "LAYERS_API_KEY": FAKE_KEY, "LAYERS_API_URL": api_url}
    return subprocess.run(
        command("check", "--deadline", "0"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_sidecar_calls_through_the_proxy_the_environment_names(
    upstream: Emulator, forward_proxy: ForwardProxy
) -> None:
    done = check(upstream.url, proxy_env(with_credentials(forward_proxy.url)))
    assert done.returncode == 0, done.stderr
    assert [seen.target for seen in forward_proxy.seen] == [upstream.url + "/v1/whoami"]
    expected = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert forward_proxy.seen[0].proxy_authorization == f"Basic {expected}"
    assert upstream.whoami_requests() == 1


def test_no_proxy_hosts_are_called_directly(
    upstream: Emulator, forward_proxy: ForwardProxy
) -> None:
    done = check(upstream.url, proxy_env(forward_proxy.url, no_proxy="localhost,127.0.0.1"))
    assert done.returncode == 0, done.stderr
    assert forward_proxy.seen == []
    assert upstream.whoami_requests() == 1


@pytest.fixture
def no_inherited_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hub()` builds its environment from this process's: no proxy setting may leak in."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_inherited_proxy")
def test_the_hub_calls_through_the_proxy_for_every_key(
    upstream: Emulator, forward_proxy: ForwardProxy, tmp_path: Path
) -> None:
    # Read once does not mean used once: every upstream call goes through the proxy.
    with hub(tmp_path, upstream.url, HTTP_PROXY=forward_proxy.url, NO_PROXY="") as process:
        for key in (FAKE_KEY, OTHER_KEY):
            reply = http("GET", process.url + "/v1/whoami", headers={"X-Api-Key": key})
            assert reply.status == 200
    assert [seen.target for seen in forward_proxy.seen] == [upstream.url + "/v1/whoami"] * 2


@pytest.mark.usefixtures("no_inherited_proxy")
def test_the_hub_reads_no_netrc_on_a_call(upstream: Emulator, tmp_path: Path) -> None:
    # A netrc that blocks whoever opens it (a FIFO with no writer): a call that consulted it
    # would hang until --timeout and answer 504.
    netrc = tmp_path / "netrc"
    os.mkfifo(netrc)
    with hub(tmp_path, upstream.url, "--timeout", "2s", NETRC=str(netrc)) as process:
        for key in (FAKE_KEY, OTHER_KEY):
            reply = http("GET", process.url + "/v1/whoami", headers={"X-Api-Key": key}, timeout=10)
            assert reply.status == 200, reply.body
    assert upstream.whoami_requests() == 2
