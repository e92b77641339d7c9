"""Real processes for your own tests and benchmarks: the emulator and the sidecar, started as
users start them (`python -m sidecar ...`), steered over loopback.

Standard library only, so importing it costs nothing and pulls in no server. Waits are on
conditions with deadlines, never sleeps. The project's tests and `bench/` both use it; neither
imports the other.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# An obviously fake key in the format the upstream documents: lp_<env>_<key_id>_<secret>.
FAKE_KEY = "lp_test_k1_FAKEsecretFAKE"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], T | None], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Polls `condition` until it returns something truthy, or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Reply:
    status: int
    body: str
    headers: Mapping[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.read().decode(), dict(response.headers))
    except urllib.error.HTTPError as error:
        # An error answer holds its connection until closed; close it here rather than leave
        # the socket to the garbage collector (a ResourceWarning, which the tests treat as an
        # error).
        with error:
            return Reply(error.code, error.read().decode(), dict(error.headers))


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "sidecar", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a test process gets: no LAYERS_* leaking in from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYERS_")}
    env.update(extra)
    return env


@dataclass
class Process:
    """A started `layers-sidecar` subcommand, its output captured to files."""

    proc: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    url: str

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        events = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def get(self, path: str, **kwargs: Any) -> Reply:
        return http("GET", self.url + path, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)


def start(
    args: list[str], *, env: Mapping[str, str], tmp: Path, name: str, url: str, ready_path: str
) -> Process:
    out, err = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:  # the child keeps its own copies
        proc = subprocess.Popen(
            command(*args), env=dict(env), stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL
        )
    process = Process(proc, out, err, url)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}: {process.stderr}")
        http("GET", url + ready_path, timeout=1)  # any answer means it is listening
        return True

    wait_for(up, timeout=15, what=f"{name} to listen on {url}")
    return process


@dataclass
class Emulator:
    """`layers-sidecar emulate` in its own process, steered through its control API."""

    process: Process
    url: str
    scenario_defaults: dict[str, Any] = field(default_factory=dict)

    def set(self, **fields: Any) -> dict[str, Any]:
        reply = http("POST", self.url + "/_emulator/scenario", body=fields)
        assert reply.status == 200, reply.body
        result: dict[str, Any] = reply.json()
        return result

    def reset(self) -> None:
        assert http("POST", self.url + "/_emulator/reset").status == 200

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = http("GET", self.url + "/_emulator/stats").json()
        return result

    def whoami_requests(self) -> int:
        return int(self.stats()["whoamiRequests"])


@contextmanager
def emulator(tmp: Path) -> Iterator[Emulator]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(
        ["emulate", "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
        env=clean_env(),
        tmp=tmp,
        name="emulator",
        url=url,
        ready_path="/_emulator/stats",
    )
    try:
        yield Emulator(process, url)
    finally:
        process.stop(signal.SIGKILL)


@contextmanager
def _loopback(
    tmp: Path, command: str, args: tuple[str, ...], *, name: str, env: Mapping[str, str]
) -> Iterator[Process]:
    """`layers-sidecar <command>` on a free loopback port, logging at debug; killed after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = clean_env(
        LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}", LAYERS_SIDECAR_LOG_LEVEL="debug", **env
    )
    process = start(
        [command, *args], env=environment, tmp=tmp, name=name, url=url, ready_path="/livez"
    )
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL)


@contextmanager
def sidecar(
    tmp: Path, api_url: str, *args: str, key: str | None = FAKE_KEY, **env: str
) -> Iterator[Process]:
    """`layers-sidecar serve` against `api_url`, on a free port, polling fast."""
    keyed = {"LAYERS_API_KEY": key} if key is not None else {}
    settings = {"LAYERS_API_URL": api_url, "LAYERS_SIDECAR_INTERVAL": "200ms", **env, **keyed}
    with _loopback(tmp, "serve", args, name="sidecar", env=settings) as process:
        yield process


@contextmanager
def hub(tmp: Path, api_url: str, *args: str, name: str = "hub", **env: str) -> Iterator[Process]:
    """`layers-sidecar hub` in front of `api_url`, on a free port, logging at debug."""
    with _loopback(tmp, "hub", args, name=name, env={"LAYERS_API_URL": api_url, **env}) as process:
        yield process


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text, or None when it is absent."""
    for line in metrics.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None
