"""No part of a header value a client sent reaches a log line, even when the request is malformed
and aiohttp's parser quotes the offending line in its error.

Real processes over loopback (hub, serve, emulator), each sent raw malformed requests carrying a
fake key; every line either wrote is grepped.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest

from sidecar.runtime.errors import ERROR_LOG_EVERY
from tests.support import FAKE_KEY, FAKE_SECRET, Process, emulator, hub, sidecar, wait_for

pytestmark = pytest.mark.e2e

KEY = FAKE_KEY.encode()
# Each a request aiohttp refuses with a 400, the key in a header line.
MALFORMED = {
    "control-char-in-value": b"X-Api-Key: " + KEY + b"\x01\r\n",
    "nul-in-bearer": b"Authorization: Bearer " + KEY + b"\x00\r\n",
    "no-colon": b"X-Api-Key " + KEY + b"\r\n",
    "space-before-colon": b"X-Api-Key : " + KEY + b"\r\n",
    "bad-name-char": b"X-Api-Key\x7f: " + KEY + b"\r\n",
    "too-long": b"X-Api-Key: " + KEY + b"A" * 9000 + b"\r\n",
    "folded": b"X-Other: x\r\n " + KEY + b"\r\n",
}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, Process]]:
    with ExitStack() as stack:
        layers = stack.enter_context(emulator(tmp_path))
        running = stack.enter_context(hub(tmp_path, layers.url))
        serve = stack.enter_context(sidecar(tmp_path, layers.url))
        yield {"emulator": layers.process, "hub": running, "serve": serve}


def send(url: str, header: bytes) -> bytes:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n")
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
        return answer


def http_errors(process: Process) -> int:
    return sum(1 for event in process.log_events() if event["event"] == "http error")


def logged_past(process: Process, seen: int) -> bool:
    return http_errors(process) > seen


def test_no_header_value_of_a_malformed_request_reaches_a_log_line(
    servers: dict[str, Process],
) -> None:
    for name, header in MALFORMED.items():
        for role, process in servers.items():
            seen = http_errors(process)
            answer = send(process.url, header)
            assert answer.split(b" ")[1].startswith(b"4"), (role, name, answer[:80])
            wait_for(partial(logged_past, process, seen), what=f"{role}: {name} logged")
        # Past the one-line-a-second limit, so that the next request's error is written too.
        time.sleep(ERROR_LOG_EVERY)
    for role, process in servers.items():
        text = process.stdout + process.stderr
        assert http_errors(process) >= len(MALFORMED), role
        # No part of the key: its secret part, nor a run of it.
        for part in (FAKE_SECRET, FAKE_SECRET[:6], FAKE_SECRET[-6:], "k1_FAKE"):
            assert part not in text, (
                role,
                part,
                [line for line in text.splitlines() if part in line],
            )
