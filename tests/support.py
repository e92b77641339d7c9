"""What several test modules share: fake keys, whoami builders, fakes and the process harness.

Test modules import from here (or `tests/tools.py`, `tests/monitoring.py`), never from another
test module. The process harness itself lives in `sidecar.testing`, so that `bench/` can use it
without importing the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl as ssl_module
import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme

from sidecar.bodies import Whoami
from sidecar.outcome import Answer
from sidecar.readiness import STARTING, State, Verdict
from sidecar.testing import (
    FAKE_KEY,
    Emulator,
    Process,
    Reply,
    clean_env,
    command,
    emulator,
    free_port,
    http,
    hub,
    sample,
    sidecar,
    start,
    wait_for,
)

__all__ = [
    "FAKE_KEY",
    "FAKE_SECRET",
    "OTHER_KEY",
    "WHOAMI",
    "WHOAMI_PARSED",
    "Emulator",
    "FakeSource",
    "Process",
    "Reply",
    "Tls",
    "assert_alive",
    "certificates",
    "clean_env",
    "command",
    "emulator",
    "error",
    "free_port",
    "http",
    "hub",
    "mount_secret",
    "ok",
    "readyz",
    "sample",
    "sidecar",
    "start",
    "wait_event",
    "wait_for",
    "wait_verdict",
]

FAKE_SECRET = "FAKEsecretFAKE"
OTHER_KEY = "lp_test_k2_OTHERfakeOTHER"

# A healthy whoami body, as the upstream documents it.
WHOAMI: dict[str, Any] = {
    "organizationId": "2481fa5c-a404-44ed-a561-565392499abc",
    "workspaceId": "2481fa5c-a404-44ed-a561-565392499abc",
    "organizationName": "Acme Growth",
    "scopes": [],
    "rateLimitTier": "standard",
    "killSwitch": False,
    "apiAccessRevoked": False,
    "apiKeyId": "c2037bb9-354d-4662-96b7-97a28ad6b6e1",
    "creditBalance": 2540,
}

# The same kind of answer once parsed, for code that starts from a State.
WHOAMI_PARSED = Whoami(
    organization_id="org-1",
    workspace_id="ws-1",
    organization_name="Acme Growth",
    rate_limit_tier="standard",
    kill_switch=False,
    api_access_revoked=False,
    api_key_id="key-1",
    credit_balance=2540,
)


def ok(**changes: Any) -> Answer:
    """A 200 whoami answer, healthy unless `changes` say otherwise."""
    return Answer(status=200, body=json.dumps({**WHOAMI, **changes}).encode())


def error(status: int, code: str | None = None, **extra: Any) -> Answer:
    """An error answer in the upstream's error shape."""
    body = {"error": {"code": code, "message": "whatever", "requestId": "req_1", **extra}}
    return Answer(status=status, body=json.dumps(body).encode())


@dataclass
class FakeSource:
    """What the server and the metrics read, without a poller."""

    state: State = field(default_factory=State)
    current: Verdict = STARTING
    is_alive: bool = True

    def snapshot(self) -> State:
        return self.state

    def verdict(self) -> Verdict:
        return self.current

    def alive(self) -> bool:
        return self.is_alive


def mount_secret(directory: Path, key: str, generation: int) -> None:
    """Lays out a Secret volume the way the kubelet does, then swaps `..data` atomically."""
    data = directory / f"..2026_11_24_{generation:02d}"
    data.mkdir()
    (data / "api-key").write_text(key + "\n")
    link = directory / "..data_tmp"
    link.symlink_to(data.name)
    link.replace(directory / "..data")  # rename(2): atomic
    entry = directory / "api-key"
    if not entry.is_symlink():
        entry.symlink_to("..data/api-key")


# Waiting on a running sidecar: its verdict, a log line, that it is still alive.


def readyz(sc: Process) -> tuple[int, str]:
    reply = sc.get("/readyz", timeout=5)
    return reply.status, reply.body.strip()


def wait_verdict(sc: Process, status: int, body: str, timeout: float = 15) -> None:
    wait_for(lambda: readyz(sc) == (status, body), timeout=timeout, what=f"/readyz {body!r}")


def wait_event(
    sc: Process, event: str, *, after: int = 0, timeout: float = 15, **match: Any
) -> dict[str, Any]:
    """The first log line after index `after` with this event and these fields."""

    def found() -> dict[str, Any] | None:
        for line in sc.log_events()[after:]:
            if line.get("event") == event and all(line.get(k) == v for k, v in match.items()):
                return line
        return None

    return wait_for(found, timeout=timeout, what=f"log {event!r} {match}")


def assert_alive(sc: Process) -> None:
    assert sc.proc.poll() is None, sc.stderr
    assert sc.get("/livez").status == 200


@dataclass(frozen=True)
class Tls:
    """Test TLS files: a CA to trust, and a server certificate (with its chain) and key it
    signed."""

    ca: Path
    cert: Path
    key: Path


def certificates(directory: Path, *hosts: str) -> Tls:
    """A fresh CA and a certificate it issued for `hosts` (127.0.0.1 when none), made in process
    by trustme, written as PEM files under `directory`."""
    ca = trustme.CA()
    issued = ca.issue_cert(*(hosts or ("127.0.0.1",)))
    tls = Tls(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    ca.cert_pem.write_to_path(str(tls.ca))
    for n, pem in enumerate(issued.cert_chain_pems):
        pem.write_to_path(str(tls.cert), append=n > 0)
    issued.private_key_pem.write_to_path(str(tls.key))
    return tls


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copies one direction of a tunnel until it closes."""
    try:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
    finally:
        writer.close()


@contextlib.contextmanager
def stream_server(handle: Handler, *, ssl: ssl_module.SSLContext | None = None) -> Iterator[int]:
    """An asyncio stream server on a free loopback port, run in a thread of its own (the test's
    own code blocks); yields the port, stops and cancels its connections on the way out."""
    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(handle, "127.0.0.1", port, ssl=ssl))
        started.set()
        loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(timeout=10), "the loopback server did not start"
    try:
        yield port
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
