"""Bounded under a burst whatever the open-files limit: `serve` and `hub` started with soft =
hard = 256 (and 1,024), then a burst of idle connections at once; /livez and a real request are
still answered within a deadline (no accept() failing with EMFILE, no probe timing out)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    FAKE_KEY,
    Emulator,
    Process,
    clean_env,
    command,
    emulator,
    free_port,
    http,
    wait_for,
)

pytestmark = pytest.mark.e2e

# Idle connections opened at once, well past either limit.
BURST = 1500
# A probe's budget: the kubelet's default timeoutSeconds is 1 s; a loaded shared box gets more.
DEADLINE = 3.0


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Emulator]:
    with emulator(tmp_path) as running:
        running.set(rateLimitPerMinute=1_000_000)
        yield running


@contextlib.contextmanager
def limited(role: str, nofile: int, tmp: Path, **env: str) -> Iterator[Process]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp / f"{role}-{nofile}.stdout", tmp / f"{role}-{nofile}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["prlimit", f"--nofile={nofile}:{nofile}", *command(role)],
            env=clean_env(LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}", **env),
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    process = Process(proc, out, err, url)
    try:
        wait_for(lambda: up(process), what=f"{role} listening")
        yield process
    finally:
        process.stop()


def up(process: Process) -> bool:
    assert process.proc.poll() is None, process.stderr
    try:
        return process.get("/livez", timeout=1).status == 200
    except OSError:
        return False


def burst(url: str, count: int) -> list[socket.socket]:
    """`count` connections opened at once, none sending anything."""
    port = int(url.rsplit(":", 1)[1])
    opened = []
    for _ in range(count):
        conn = socket.socket()
        conn.setblocking(False)
        conn.connect_ex(("127.0.0.1", port))
        opened.append(conn)
    return opened


def timed(url: str, **kwargs: object) -> tuple[int, float]:
    started = time.monotonic()
    status = http("GET", url, timeout=DEADLINE, **kwargs).status  # type: ignore[arg-type]
    return status, time.monotonic() - started


@pytest.mark.parametrize("nofile", [256, 1024])
@pytest.mark.parametrize("role", ["serve", "hub"])
def test_a_burst_of_idle_connections_under_a_low_open_files_limit(
    upstream: Emulator, tmp_path: Path, role: str, nofile: int
) -> None:
    env = {"LAYERS_API_URL": upstream.url}
    if role == "serve":
        env |= {"LAYERS_API_KEY": FAKE_KEY, "LAYERS_SIDECAR_INTERVAL": "1s"}
    with limited(role, nofile, tmp_path, **env) as process:
        if role == "serve":
            wait_for(lambda: process.get("/readyz").status == 200, what="serve ready")
        sockets = burst(process.url, BURST)
        try:
            for _ in range(3):
                status, took = timed(process.url + "/livez")
                assert (status, took < DEADLINE) == (200, True), took
                if role == "serve":
                    status, took = timed(process.url + "/readyz")
                else:
                    headers = {"X-Api-Key": FAKE_KEY}
                    status, took = timed(process.url + "/v1/whoami", headers=headers)
                assert (status, took < DEADLINE) == (200, True), took
                # Another wave on top of the first.
                sockets += burst(process.url, BURST // 3)
        finally:
            for conn in sockets:
                conn.close()
        assert process.proc.poll() is None
        assert "Too many open files" not in process.stderr
