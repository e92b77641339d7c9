"""Fault injection against real processes: the sidecar under `serve`, an upstream that misbehaves.

Each case checks three things: the verdict `/readyz` gives, the log line that says why, and that
the process stays up (`/livez` answers 200) and recovers by itself once the fault is gone.
Everything is on loopback; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from tests.support import (
    FAKE_KEY,
    Emulator,
    Process,
    assert_alive,
    clean_env,
    emulator,
    free_port,
    readyz,
    sidecar,
    start,
    wait_event,
    wait_for,
    wait_verdict,
)
from tests.support import WHOAMI as GOOD_BODY

pytestmark = pytest.mark.faults

# Fast polls, and a stale-after of 0 so that a transient failure shows in the verdict at once.
FAST = ("--interval", "200ms", "--timeout", "300ms", "--stale-after", "0")


# Helpers: the verdict, the log, the process.


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def when(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


def break_and_recover(
    sc: Process, emu: Emulator, patch: dict[str, Any], outcome: str, reason: str = "stale"
) -> dict[str, Any]:
    """Ready → fault → not ready (logged) → fault cleared → ready (logged); returns the failure."""
    wait_verdict(sc, 200, "ok")
    mark = len(sc.log_events())
    emu.set(**patch)
    # One line says both: the verdict changed, and the answer that changed it.
    failed = wait_event(sc, "not ready", after=mark, reason=reason, outcome=outcome, level="error")
    wait_verdict(sc, 503, f"not ready: {reason}")
    assert_alive(sc)

    mark = len(sc.log_events())
    emu.reset()
    wait_event(sc, "ready", after=mark, reason="ok", level="info")
    wait_verdict(sc, 200, "ok")
    assert_alive(sc)
    result: dict[str, Any] = failed
    return result


# Upstream faults driven through the emulator.


@pytest.mark.parametrize(
    ("patch", "outcome", "detail"),
    [
        pytest.param({"delay": 2}, "timeout", "no answer within 0.3s", id="slower-than-timeout"),
        pytest.param({"failure": "reset"}, "network_error", "", id="reset-mid-body"),
        pytest.param({"failure": "truncated"}, "network_error", "", id="truncated-body"),
        pytest.param({"failure": "garbage"}, "invalid_response", "", id="garbage-bytes"),
        pytest.param({"failure": "huge"}, "invalid_response", "body over 64 KiB", id="8mib-body"),
    ],
)
def test_a_broken_answer_is_transient_and_recovers(
    tmp_path: Path, patch: dict[str, Any], outcome: str, detail: str
) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url, *FAST) as sc:
        failed = break_and_recover(sc, emu, patch, outcome)
        assert detail in failed["detail"]
        assert FAKE_KEY not in sc.stderr


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        pytest.param([GOOD_BODY], "not an object", id="a-list"),
        pytest.param({**GOOD_BODY, "killSwitch": "false"}, "killSwitch", id="switch-as-string"),
        pytest.param({**GOOD_BODY, "creditBalance": None}, "creditBalance", id="null-balance"),
        pytest.param({**GOOD_BODY, "apiKeyId": 7}, "apiKeyId", id="number-as-id"),
        pytest.param(
            {**GOOD_BODY, "creditBalance": 10**400}, "creditBalance", id="balance-past-float"
        ),
    ],
)
def test_a_malformed_200_is_never_ready_and_recovers(
    tmp_path: Path, body: Any, detail: str
) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url, *FAST) as sc:
        failed = break_and_recover(sc, emu, {"body": body}, "invalid_response")
        assert detail in failed["detail"]


def test_an_8mib_body_does_not_become_8mib_of_memory(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url, *FAST) as sc:
        wait_verdict(sc, 200, "ok")
        before = rss_mib(sc.proc.pid)
        emu.set(failure="huge")
        start_count = emu.whoami_requests()
        wait_for(lambda: emu.whoami_requests() >= start_count + 10, what="ten 8 MiB answers")
        assert rss_mib(sc.proc.pid) - before < 8, "the sidecar read the 8 MiB body"
        emu.reset()
        wait_verdict(sc, 200, "ok")
        assert_alive(sc)


def test_connection_refused_then_the_upstream_comes_back(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def upstream(name: str) -> Process:
        return start(
            ["emulate", "--listen", f"127.0.0.1:{port}", "--log-level", "warning"],
            env=clean_env(),
            tmp=tmp_path,
            name=name,
            url=url,
            ready_path="/_emulator/stats",
        )

    first = upstream("emulator-1")
    try:
        with sidecar(tmp_path, url, *FAST) as sc:
            wait_verdict(sc, 200, "ok")
            mark = len(sc.log_events())
            first.stop(signal.SIGKILL)
            failed = wait_event(sc, "whoami failed", after=mark, outcome="network_error")
            assert "Cannot connect" in failed["detail"] or "refused" in failed["detail"].lower()
            wait_event(sc, "not ready", after=mark, reason="stale", level="error")
            wait_verdict(sc, 503, "not ready: stale")
            assert_alive(sc)

            mark = len(sc.log_events())
            second = upstream("emulator-2")
            try:
                wait_event(sc, "ready", after=mark, level="info")
                wait_verdict(sc, 200, "ok")
                assert_alive(sc)
            finally:
                second.stop(signal.SIGKILL)
    finally:
        first.stop(signal.SIGKILL)


def test_a_429_storm_is_obeyed_no_poll_before_retry_after(tmp_path: Path) -> None:
    retry_after = 1.0
    # The default stale-after: a 429 is transient, so a ready pod stays ready through the storm.
    with (
        emulator(tmp_path) as emu,
        sidecar(tmp_path, emu.url, "--interval", "200ms", "--timeout", "1s") as sc,
    ):
        wait_verdict(sc, 200, "ok")
        mark = len(sc.log_events())
        emu.set(failure="rate_limited", retryAfter=retry_after)
        wait_event(sc, "whoami failed", after=mark, outcome="rate_limited", level="warning")
        storm_start, start_count = time.monotonic(), emu.whoami_requests()

        def polls() -> list[dict[str, Any]]:
            return [
                line
                for line in sc.log_events()[mark:]
                if line["event"] == "whoami failed" and line["outcome"] == "rate_limited"
            ]

        wait_for(lambda: len(polls()) >= 5, timeout=15, what="five 429s")
        limited = polls()
        assert readyz(sc) == (200, "ok"), "a fresh ready verdict is kept through 429s"
        storm = time.monotonic() - storm_start
        # At most one poll per Retry-After: at 200ms polling this would be five times as many.
        assert emu.whoami_requests() - start_count <= storm / retry_after + 1
        gaps = [when(b) - when(a) for a, b in itertools.pairwise(limited)]
        assert min(gaps) >= retry_after - 0.01, f"polled before Retry-After: {gaps}"
        assert all(line.get("retryAfter") in (None, retry_after) for line in limited)
        # Repeats are logged at debug after the first warning, not once a poll.
        assert sum(line["level"] == "warning" for line in limited) == 1
        assert_alive(sc)

        emu.reset()
        wait_for(
            lambda: sc.get("/status").json()["lastOutcome"] == "ok",
            timeout=2 * retry_after + 5,
            what="a good poll after the storm",
        )
        assert sc.get("/status").json()["consecutiveFailures"] == 0
        assert_alive(sc)


# An upstream that flaps: good, bad, good, bad, one answer each.


class Flapping(BaseHTTPRequestHandler):
    GOOD: ClassVar[bytes] = json.dumps(GOOD_BODY).encode()
    bad: ClassVar[tuple[int, bytes]] = (500, b"")
    served: ClassVar[list[bool]] = []
    steady: ClassVar[bool] = False

    def do_GET(self) -> None:
        good = self.steady or not (self.served and self.served[-1])
        self.served.append(good)
        status, body = (200, self.GOOD) if good else self.bad
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Upstream:
    handler: type[Flapping]
    url: str

    @property
    def served(self) -> list[bool]:
        return self.handler.served

    def steady(self) -> None:
        """From now on every answer is good."""
        self.handler.steady = True


@contextmanager
def flapping(bad: tuple[int, bytes]) -> Iterator[Upstream]:
    handler = type("Handler", (Flapping,), {"bad": bad, "served": [], "steady": False})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Upstream(handler, f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_upstream_that_flaps_between_ok_and_5xx_keeps_a_fresh_pod_ready(
    tmp_path: Path,
) -> None:
    with (
        flapping((500, b'{"error": {"code": "INTERNAL"}}')) as upstream,
        sidecar(tmp_path, upstream.url, "--interval", "200ms") as sc,
    ):
        wait_verdict(sc, 200, "ok")
        seen, deadline = [], time.monotonic() + 15
        while len(upstream.served) < 16:
            assert time.monotonic() < deadline, "the sidecar stopped polling"
            seen.append(readyz(sc))
        assert set(seen) == {(200, "ok")}, "a fresh ready verdict flickered"
        failures = [e for e in sc.log_events() if e["event"] == "whoami failed"]
        assert len(failures) >= 6
        assert {e["outcome"] for e in failures} == {"server_error"}
        # Each failure follows a good poll, so each starts a new run and is logged at warning.
        assert {e["level"] for e in failures} == {"warning"}
        assert not [e for e in sc.log_events() if e["event"] == "not ready"]
        assert_alive(sc)


def test_an_upstream_that_flaps_the_kill_switch_is_followed_poll_by_poll(tmp_path: Path) -> None:
    kill = (503, b'{"error": {"code": "KILL_SWITCH", "message": "Key has been disabled."}}')
    with (
        flapping(kill) as upstream,
        sidecar(tmp_path, upstream.url, "--interval", "200ms") as sc,
    ):
        wait_verdict(sc, 200, "ok")
        wait_for(lambda: len(upstream.served) >= 13, timeout=15, what="13 flapping answers")
        upstream.steady()
        wait_for(lambda: upstream.served[-1], what="a steady good answer")
        served_bad = upstream.served.count(False)
        wait_verdict(sc, 200, "ok")

        def verdicts(event: str) -> list[dict[str, Any]]:
            return [e for e in sc.log_events() if e["event"] == event]

        # Every kill switch answer turned the pod not ready, and every good one ready again.
        wait_for(lambda: len(verdicts("ready")) == served_bad + 1, what="one ready per recovery")
        stops = verdicts("not ready")
        assert len(stops) == served_bad
        assert {e["reason"] for e in stops} == {"kill_switch"}
        assert {e["level"] for e in stops} == {"error"}
        assert_alive(sc)


# The key file: deleted, emptied, unreadable, restored, while the sidecar runs.


def replace_file(path: Path, text: str) -> None:
    """Atomically, as Kubernetes swaps a mounted Secret, so no poll reads half a write."""
    new = path.with_name(path.name + ".new")
    new.write_text(text)
    os.replace(new, path)


def test_the_key_file_deleted_emptied_unreadable_and_restored(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(FAKE_KEY + "\n")
    with (
        emulator(tmp_path) as emu,
        sidecar(tmp_path, emu.url, key=None, LAYERS_API_KEY_FILE=str(key_file)) as sc,
    ):

        def lose_and_restore(lose: Any, detail: str) -> None:
            wait_verdict(sc, 200, "ok")
            mark = len(sc.log_events())
            lose()
            line = wait_event(sc, "not ready", after=mark, reason="key_unavailable", level="error")
            assert detail in line["detail"]
            assert FAKE_KEY not in json.dumps(line)
            wait_verdict(sc, 503, "not ready: key_unavailable")
            # No key, no call: the upstream is not asked while the key is missing.
            count = emu.whoami_requests()
            wait_for(
                lambda: sc.get("/status").json()["consecutiveFailures"] >= 3,
                what="three keyless polls",
            )
            assert emu.whoami_requests() == count
            assert_alive(sc)

            mark = len(sc.log_events())
            if key_file.is_dir():
                key_file.rmdir()
            replace_file(key_file, FAKE_KEY + "\n")
            wait_event(sc, "ready", after=mark, level="info")
            wait_verdict(sc, 200, "ok")
            assert_alive(sc)

        lose_and_restore(key_file.unlink, "does not exist")
        lose_and_restore(lambda: replace_file(key_file, ""), "is empty")
        lose_and_restore(lambda: replace_file(key_file, "  \n"), "is empty")
        if os.geteuid() == 0:
            # Root reads a file whatever its mode bits say, so chmod 000 would prove nothing
            # here; a path that cannot be read as a file is the unreadable case root still has.
            def unreadable() -> None:
                key_file.unlink()
                key_file.mkdir()

            lose_and_restore(unreadable, "is a directory")
        else:
            lose_and_restore(lambda: key_file.chmod(0), "permission denied")
        assert FAKE_KEY not in sc.stderr


# Shutdown, load and slow clients.


def test_sigterm_during_an_in_flight_request_exits_within_two_seconds(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu:
        emu.set(delay=30)
        with sidecar(tmp_path, emu.url, "--timeout", "60s") as sc:
            wait_for(lambda: emu.whoami_requests() >= 1, what="a whoami in flight")
            assert sc.get("/status").json()["lastOutcome"] is None, "not in flight any more"
            started = time.monotonic()
            sc.proc.send_signal(signal.SIGTERM)
            code = sc.proc.wait(timeout=5)
            took = time.monotonic() - started
            assert code == 0, sc.stderr
            assert took < 2.0, f"took {took:.2f}s to stop"
            assert any(e["event"] == "stopping" for e in sc.log_events())
            assert "Traceback" not in sc.stderr


async def probe_concurrently(port: int, count: int) -> list[bytes]:
    """Opens `count` connections at once, then sends a probe on each, then reads every answer."""
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count))
    )
    try:
        for _, writer in opened:
            writer.write(b"GET /readyz HTTP/1.1\r\nHost: sidecar\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(30):
            return list(await asyncio.gather(*(reader.read() for reader, _ in opened)))
    finally:
        for _, writer in opened:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for _, w in opened), return_exceptions=True)


def test_a_thousand_concurrent_probe_connections_are_all_answered(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url) as sc:
        wait_verdict(sc, 200, "ok")
        before = emu.whoami_requests()
        port = int(sc.url.rsplit(":", 1)[1])
        answers = asyncio.run(probe_concurrently(port, 1000))
        assert len(answers) == 1000
        assert all(a.startswith(b"HTTP/1.1 200") and a.endswith(b"ok\n") for a in answers)
        # Probes are answered from memory: 1,000 of them cost the upstream nothing extra.
        assert emu.whoami_requests() - before < 50
        assert_alive(sc)
        assert readyz(sc) == (200, "ok")


def test_a_slow_client_that_never_reads_does_not_stall_other_probes(tmp_path: Path) -> None:
    with emulator(tmp_path) as emu, sidecar(tmp_path, emu.url) as sc:
        wait_verdict(sc, 200, "ok")
        port = int(sc.url.rsplit(":", 1)[1])
        stuck: list[socket.socket] = []
        try:
            # One client pipelines thousands of /metrics requests and never reads a byte, so the
            # server's writes to it back up; another sends half a request line and stops.
            hog = socket.create_connection(("127.0.0.1", port))
            hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hog.setblocking(False)
            stuck.append(hog)
            request = b"GET /metrics HTTP/1.1\r\nHost: sidecar\r\n\r\n" * 5000
            deadline = time.monotonic() + 5
            while request and time.monotonic() < deadline:
                with suppress(BlockingIOError):
                    request = request[hog.send(request) :]
            half = socket.create_connection(("127.0.0.1", port))
            half.sendall(b"GET /rea")
            stuck.append(half)

            slowest = 0.0
            for _ in range(50):
                started = time.monotonic()
                assert readyz(sc) == (200, "ok")
                assert sc.get("/metrics", timeout=2).status == 200
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0, f"a probe took {slowest:.2f}s behind a stuck client"
            assert re.search(r"^layers_ready 1", sc.get("/metrics").body, re.MULTILINE)
            assert_alive(sc)
        finally:
            for sock in stuck:
                sock.close()
        assert_alive(sc)
        assert readyz(sc) == (200, "ok")
