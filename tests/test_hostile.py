"""The sidecar against a hostile upstream, hostile clients and odd key files: real processes.

Each case checks the verdict `/readyz` gives, the log line that says why, and that the process
stays up and recovers by itself once the fault is gone. The upstream is `tests/hostile.py`, a raw
socket server that answers with exactly the bytes a case chooses.
"""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
import os
import re
import resource
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.hostile import (
    GOOD,
    Hostile,
    good,
    hostile,
    leaks,
    members,
    response,
)
from tests.support import (
    FAKE_KEY,
    FAKE_SECRET,
    Process,
    assert_alive,
    clean_env,
    command,
    hub,
    readyz,
    sample,
    sidecar,
    wait_event,
    wait_for,
    wait_verdict,
)

pytestmark = pytest.mark.faults

# Fast polls, and a stale-after of 0 so that a transient failure shows in the verdict at once.
FAST = ("--interval", "200ms", "--timeout", "1s", "--stale-after", "0")
KIB = 1024
MIB = 1024 * KIB


@contextmanager
def watching(tmp: Path, *args: str, reply: bytes = b"") -> Iterator[tuple[Hostile, Process]]:
    """A hostile upstream answering `reply` (a good whoami by default), and a ready sidecar."""
    with hostile(reply or good()) as upstream, sidecar(tmp, upstream.url, *args) as sc:
        wait_verdict(sc, 200, "ok")
        yield upstream, sc


def fault_then_recover(
    upstream: Hostile, sc: Process, reply: bytes, *, outcome: str, reason: str
) -> dict[str, Any]:
    """ok → `reply` → not ready for `reason` (logged) → good again → ready (logged)."""
    mark = len(sc.log_events())
    upstream.set(reply)
    failed = wait_event(sc, "not ready", after=mark, reason=reason, level="error")
    wait_verdict(sc, 503, f"not ready: {reason}")
    assert sc.get("/status").json()["lastOutcome"] == outcome
    assert_alive(sc)
    mark = len(sc.log_events())
    upstream.set(good())
    wait_event(sc, "ready", after=mark, reason="ok", level="info")
    wait_verdict(sc, 200, "ok")
    assert_alive(sc)
    return failed


# It must never fail open: a stated switch wins, and in doubt the answer is not ok.

SWITCHED = [
    pytest.param(response(200, members(("killSwitch", True))), "kill_switch", id="kill-only-field"),
    pytest.param(
        response(200, members(("apiAccessRevoked", True), ("creditBalance", None))),
        "access_revoked",
        id="revoked-with-null-balance",
    ),
    pytest.param(
        response(200, members(*GOOD.items(), ("killSwitch", True), pad=200 * KIB)),
        "kill_switch",
        id="kill-in-200kib-body",
    ),
    pytest.param(
        response(200, members(("killSwitch", True), pad=2 * MIB)),
        "kill_switch",
        id="kill-first-in-2mib-body",
    ),
    pytest.param(
        response(200, members(*GOOD.items(), ("killSwitch", True))),
        "kill_switch",
        id="duplicate-name-false-then-true",
    ),
    pytest.param(
        response(200, members(("killSwitch", True), ("organizationId", 7))),
        "kill_switch",
        id="kill-with-wrong-types",
    ),
    pytest.param(
        response(200, members(("killSwitch", True), pad=10) + b"garbage after"),
        "kill_switch",
        id="kill-then-garbage",
    ),
    pytest.param(
        response(503, members(("error", {"code": "KILL_SWITCH"}), pad=300 * KIB)),
        "kill_switch",
        id="503-kill-in-300kib-body",
    ),
]


@pytest.mark.parametrize(("reply", "reason"), SWITCHED)
def test_a_stated_switch_is_a_hard_stop_whatever_the_rest_of_the_body(
    reply: bytes, reason: str, tmp_path: Path
) -> None:
    with watching(tmp_path, *FAST) as (upstream, sc):
        fault_then_recover(upstream, sc, reply, outcome=reason, reason=reason)


NOT_OK = [
    pytest.param(
        response(200, members(*GOOD.items(), ("creditBalance", 0))),
        "invalid_response",
        id="duplicate-balance",
    ),
    pytest.param(
        response(200, members(*GOOD.items(), pad=100 * KIB)),
        "invalid_response",
        id="good-but-over-64kib",
    ),
    pytest.param(
        response(200, members(*GOOD.items(), pad=2 * MIB) + b', "killSwitch": true}'),
        "invalid_response",
        id="switch-past-1mib-is-never-read",
    ),
    pytest.param(response(408, b""), "server_error", id="408"),
    pytest.param(response(421, b""), "server_error", id="421"),
    pytest.param(response(425, b""), "server_error", id="425"),
]


@pytest.mark.parametrize(("reply", "outcome"), NOT_OK)
def test_an_ambiguous_or_retryable_answer_is_transient_never_ok(
    reply: bytes, outcome: str, tmp_path: Path
) -> None:
    with watching(tmp_path, *FAST) as (upstream, sc):
        fault_then_recover(upstream, sc, reply, outcome=outcome, reason="stale")


def chunked(total: int) -> bytes:
    """A 200 sent chunked, `total` bytes of a JSON string that never closes."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    chunks = [b'2\r\n{"\r\n'] + [b"10000\r\n" + piece + b"\r\n"] * (total // 65536)
    return head + b"".join(chunks) + b"0\r\n\r\n"


ODD_HTTP = [
    # gzip and deflate are decoded (tests/test_encodings.py); a coding HTTP defines for this but
    # the client does not decode stays what it is: not JSON.
    pytest.param(
        response(200, gzip.compress(json.dumps(GOOD).encode()), headers={"Content-Encoding": "br"}),
        "invalid_response",
        id="unknown-coding-not-decoded",
    ),
    pytest.param(
        response(200, GOOD, headers={f"X-H{n}": "v" for n in range(300)}),
        "network_error",
        id="300-headers",
    ),
    pytest.param(
        response(200, GOOD, headers={"X-Long": "v" * 100_000}), "network_error", id="100kib-header"
    ),
    pytest.param(chunked(4 * MIB), "invalid_response", id="4mib-chunked"),
    pytest.param(
        response(200, json.dumps(GOOD).replace("2540", "9" * 5000)),
        "invalid_response",
        id="5000-digit-number",
    ),
    pytest.param(response(200, b"[" * 100_000), "invalid_response", id="100k-nesting"),
    pytest.param(
        response(302, b"", headers={"Location": "http://elsewhere.example/"}),
        "client_error",
        id="redirect",
    ),
]


@pytest.mark.parametrize(("reply", "outcome"), ODD_HTTP)
def test_odd_http_is_never_ok_and_recovers(reply: bytes, outcome: str, tmp_path: Path) -> None:
    reason = "client_error" if outcome == "client_error" else "stale"
    with watching(tmp_path, *FAST) as (upstream, sc):
        fault_then_recover(upstream, sc, reply, outcome=outcome, reason=reason)
        # A redirect is never followed: every request went to this upstream, none elsewhere.
        assert all(request.header("Host") for request in upstream.requests)


def test_a_retryable_4xx_is_retried_with_back_off_not_after_an_interval(tmp_path: Path) -> None:
    # From the first poll on, so that no interval-long wait after a good answer comes first.
    with (
        hostile(response(408, b"")) as upstream,
        sidecar(tmp_path, upstream.url, "--interval", "60s", "--timeout", "1s") as sc,
    ):
        # Back-off: about 1 s, then 2 s; an interval would be 60 s.
        wait_for(lambda: len(upstream.requests) >= 3, timeout=15, what="three tries")
        assert sc.get("/status").json()["lastOutcome"] == "server_error"
        assert readyz(sc) == (503, "not ready: starting")
        upstream.set(good())
        wait_verdict(sc, 200, "ok", timeout=20)


def test_nothing_the_upstream_sets_carries_over_to_the_next_call(tmp_path: Path) -> None:
    cookie = response(
        200, GOOD, headers={"Set-Cookie": "session=upstream-chose-this; Path=/; Max-Age=3600"}
    )
    # By name, not by IP address: aiohttp's default jar ignores cookies set by an IP address.
    with (
        hostile(cookie) as upstream,
        sidecar(tmp_path, upstream.url.replace("127.0.0.1", "localhost"), *FAST) as sc,
    ):
        wait_for(lambda: len(upstream.requests) >= 5, what="five polls after a Set-Cookie")
        assert all(request.header("Cookie") is None for request in upstream.requests)
        # Nor any compression the upstream might choose: identity only, read as sent.
        assert {r.header("Accept-Encoding") for r in upstream.requests} == {"identity"}
        assert_alive(sc)


# It must never hammer Layers, nor stop polling for ever.


def gaps(upstream: Hostile, mark: int) -> list[float]:
    times = [request.at for request in upstream.since(mark)]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Retry-After": "0"}, id="retry-after-0"),
        pytest.param({"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}, id="date-in-past"),
        pytest.param({"X-RateLimit-Reset": "1000000001"}, id="reset-in-past"),
        pytest.param({"Retry-After": "1_000"}, id="underscore-form"),
        pytest.param({"Retry-After": "1e308"}, id="exponent-1e308"),
        pytest.param({"Retry-After": "Thu, 99 Jan 2027 99:00:00 GMT"}, id="absurd-date"),
    ],
)
def test_a_429_that_asks_for_no_wait_does_not_make_a_hot_loop(
    headers: dict[str, str], tmp_path: Path
) -> None:
    with watching(tmp_path, "--interval", "4s", "--timeout", "1s") as (upstream, sc):
        mark = len(sc.log_events())
        count = upstream.set(response(429, {"error": {"code": "RATE_LIMITED"}}, headers=headers))
        wait_event(sc, "whoami failed", after=mark, outcome="rate_limited", level="warning")
        wait_for(lambda: len(upstream.since(count)) >= 4, timeout=30, what="four 429s")
        # The back-off: 0.5-1 s, then 1-2 s, then 2-4 s. The old loop: ~800 calls a second.
        assert min(gaps(upstream, count)[:3]) >= 0.45, gaps(upstream, count)
        assert_alive(sc)
        upstream.set(good())
        wait_for(lambda: sc.get("/status").json()["lastOutcome"] == "ok", timeout=20, what="ok")
        assert readyz(sc) == (200, "ok")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Retry-After": "1000000000000"}, id="retry-after-1e12"),
        pytest.param({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, id="year-9999"),
        pytest.param({"X-RateLimit-Reset": "1800000000000"}, id="reset-in-milliseconds"),
        pytest.param({"Retry-After": "9" * 5000}, id="5000-digits"),
    ],
)
def test_a_429_that_asks_for_for_ever_still_polls_within_ten_intervals(
    headers: dict[str, str], tmp_path: Path
) -> None:
    # --interval 300ms: the ceiling is 3 s. Unbounded, the next poll would never come.
    with watching(tmp_path, "--interval", "300ms", "--timeout", "1s") as (upstream, sc):
        count = upstream.set(response(429, {"error": {"code": "RATE_LIMITED"}}, headers=headers))
        wait_for(lambda: len(upstream.since(count)) >= 3, timeout=20, what="polls after 429")
        assert max(gaps(upstream, count)) <= 3.0 + 1.0, gaps(upstream, count)
        assert_alive(sc)
        upstream.set(good())
        wait_for(lambda: sc.get("/status").json()["lastOutcome"] == "ok", timeout=20, what="ok")


def test_low_quota_on_a_good_answer_waits_for_the_reset(tmp_path: Path) -> None:
    low = response(
        200,
        GOOD,
        headers={
            "X-RateLimit-Limit": "100",
            "X-RateLimit-Remaining": "5",
            "X-RateLimit-Reset": "2",
        },
    )
    with watching(tmp_path, "--interval", "200ms", "--timeout", "1s", reply=low) as (upstream, sc):
        count = len(upstream.requests)
        wait_for(lambda: len(upstream.since(count)) >= 3, timeout=20, what="three polls")
        # Reset in 2 s plus jitter up to the interval: no poll sooner than the reset.
        assert min(gaps(upstream, count)) >= 1.9, gaps(upstream, count)
        assert readyz(sc) == (200, "ok")
        assert_alive(sc)


# It must never die or freeze.


def metrics_ok(sc: Process) -> str:
    reply = sc.get("/metrics")
    assert reply.status == 200, reply.body
    return reply.body


def test_a_lone_surrogate_or_control_characters_never_break_metrics_or_logs(tmp_path: Path) -> None:
    body = json.dumps(GOOD).replace("Acme Growth", "Acme\\ud800\\n[+]forged\\u2028\\u0000")
    nasty = response(200, body.encode())
    with watching(tmp_path, *FAST, reply=nasty) as (upstream, sc):
        wait_for(lambda: len(upstream.requests) >= 3, what="three polls")
        body = metrics_ok(sc)
        assert 'organization_name="invalid"' in body
        status = sc.get("/status").json()
        assert "\n" not in status["organizationName"]
        assert "\\ud800" in status["organizationName"]
        upstream.set(good())
        wait_for(lambda: 'organization_name="Acme Growth"' in metrics_ok(sc), what="recovery")
        assert all(isinstance(line, dict) for line in sc.log_events())  # every line is JSON


def test_rate_limit_tier_series_stay_bounded_when_every_answer_invents_a_tier(
    tmp_path: Path,
) -> None:
    def invented(head: bytes) -> bytes:
        return good(rateLimitTier=f"tier-{os.urandom(6).hex()}")

    with watching(tmp_path, *FAST) as (upstream, sc):
        count = upstream.set(invented)
        wait_for(lambda: len(upstream.since(count)) >= 20, what="twenty invented tiers")
        tiers = re.findall(r"^layers_rate_limit_tier\{", metrics_ok(sc), re.MULTILINE)
        assert len(tiers) == 5  # the four known ones and the current one
        upstream.set(good())
        wait_for(
            lambda: len(re.findall(r"^layers_rate_limit_tier\{", metrics_ok(sc), re.M)) == 4,
            what="the invented tier to go once it is no longer current",
        )


ODD_FILES: list[Any] = [
    pytest.param(lambda path: os.mkfifo(path), "(a FIFO)", id="fifo"),
    pytest.param(lambda path: path.symlink_to("/dev/zero"), "(a device)", id="dev-zero"),
    pytest.param(lambda path: path.symlink_to("/dev/urandom"), "(a device)", id="dev-urandom"),
    pytest.param(lambda path: path.mkdir(), "is a directory", id="directory"),
    pytest.param(
        lambda path: os.truncate(path.touch() or path, 1 << 30), "too large", id="sparse-1gib"
    ),
]


@pytest.mark.parametrize(("make", "detail"), ODD_FILES)
def test_an_odd_key_file_is_a_clear_reason_and_never_blocks(
    tmp_path: Path, make: Callable[[Path], Any], detail: str
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(FAKE_KEY + "\n")
    with (
        hostile(good()) as upstream,
        sidecar(tmp_path, upstream.url, *FAST, key=None, LAYERS_API_KEY_FILE=str(key_file)) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        mark = len(sc.log_events())
        key_file.unlink()
        make(key_file)
        # Ready to not ready is one line: the verdict's change, with what the key file is.
        line = wait_event(sc, "not ready", after=mark, level="error", reason="key_unavailable")
        assert detail in line["detail"]
        wait_verdict(sc, 503, "not ready: key_unavailable")
        # The loop is not blocked: probes, /status and the schedule all carry on.
        failures = sc.get("/status").json()["consecutiveFailures"]
        wait_for(
            lambda: sc.get("/status").json()["consecutiveFailures"] >= failures + 3,
            what="three more keyless polls",
        )
        assert_alive(sc)
        mark = len(sc.log_events())
        if key_file.is_dir():
            key_file.rmdir()
        else:
            key_file.unlink()
        key_file.write_text(FAKE_KEY + "\n")
        wait_event(sc, "ready", after=mark, level="info")
        assert_alive(sc)


@pytest.mark.parametrize(("make", "detail"), ODD_FILES[:3])
def test_check_with_an_odd_key_file_ends_at_once_with_exit_2(
    tmp_path: Path, make: Callable[[Path], Any], detail: str
) -> None:
    key_file = tmp_path / "api-key"
    make(key_file)
    with hostile(good()) as upstream:
        done = subprocess.run(
            command("check", "--api-key-file", str(key_file), "--deadline", "30s"),
            env=clean_env(LAYERS_API_URL=upstream.url),
            capture_output=True,
            timeout=20,
            check=False,
        )
    assert done.returncode == 2, done.stderr
    assert detail in done.stderr.decode()
    assert not upstream.requests


def test_an_impossible_api_url_is_a_configuration_error_at_start_up() -> None:
    for url in ("http://127.0.0.1:99999", "http://exa mple.com", "http://host:0"):
        done = subprocess.run(
            command("check"),
            env=clean_env(LAYERS_API_KEY=FAKE_KEY, LAYERS_API_URL=url),
            capture_output=True,
            timeout=20,
            check=False,
        )
        assert done.returncode == 2, (url, done.stderr)
        lines = done.stderr.decode().strip().splitlines()
        assert len(lines) == 1
        assert "LAYERS_API_URL" in lines[0]


async def hold_idle(port: int, count: int) -> list[asyncio.StreamWriter]:
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count)),
        return_exceptions=True,
    )
    return [pair[1] for pair in opened if isinstance(pair, tuple)]


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def test_a_thousand_idle_keep_alive_connections_do_not_starve_probes_or_polls(
    tmp_path: Path,
) -> None:
    loop = asyncio.new_event_loop()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        # The sidecar starts with this process's limits (often 1,024 soft); only then does the
        # test raise its own, to hold more connections than the sidecar started with.
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 1024), hard))
        with watching(tmp_path, *FAST) as (upstream, sc):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
            port = int(sc.url.rsplit(":", 1)[1])
            idle = loop.run_until_complete(hold_idle(port, 1500))
            assert len(idle) >= 1100
            # Each sent half a request and went quiet, or nothing at all: both hold a slot.
            for writer in idle[::2]:
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")
            loop.run_until_complete(asyncio.sleep(0))
            count = len(upstream.requests)
            for _ in range(20):
                assert readyz(sc) == (200, "ok")
                assert sc.get("/livez").status == 200
            wait_for(lambda: len(upstream.requests) >= count + 5, what="polls carry on")
            assert len(sc.stderr) < 100_000, "stderr grew with the idle connections"
            assert "Traceback" not in sc.stderr
            loop.run_until_complete(close_all(idle))
            assert_alive(sc)
    finally:
        loop.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


MALFORMED_REQUESTS = [
    b"GET /readyz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
    b"GET /readyz HTTP/9.9\r\n\r\n",
    b"GET " + b"/a" * 10000 + b" HTTP/1.1\r\n\r\n",
    b"GET /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b'GET /readyz HTTP/1.1\r\nX: \x01{"event": "readyz check passed"}\r\n\r\n',
]


def test_malformed_requests_give_at_most_one_json_line_a_second_and_no_traceback(
    tmp_path: Path,
) -> None:
    with watching(tmp_path, "--interval", "5s", "--log-level", "info") as (_, sc):
        port = int(sc.url.rsplit(":", 1)[1])
        before = len(sc.stderr)
        for _ in range(50):
            for request in MALFORMED_REQUESTS:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                    conn.sendall(request)
                    with suppress(OSError):
                        conn.recv(4096)
        written = sc.stderr[before:]
        assert "Traceback" not in written
        lines = [json.loads(line) for line in written.splitlines()]
        errors = [line for line in lines if line["event"] == "http error"]
        assert 1 <= len(errors) <= 10, len(errors)
        assert len(written) < 10_000, f"{len(written)} bytes for 300 bad requests"
        assert readyz(sc) == (200, "ok")
        assert_alive(sc)


# It must never leak any part of the key.


def echo(head: bytes) -> bytes:
    """Echoes the key back in every place an upstream string goes."""
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-api-key:")
    )
    secret = key.rsplit("_", 1)[1]
    message = "x" * 190 + key  # a cut at 200 characters used to keep 15 of them
    return response(
        402,
        {
            "error": {
                "code": f"BILLING_{secret}",
                "message": message + "\n[+]whoami ok\nreadyz check passed",
                "requestId": f"req_{key}",
                "details": {"minTier": secret[2:]},
            }
        },
        headers={"X-Request-Id": f"{secret[:9]}x{secret[5:]}"},
    )


def echo_in_200(head: bytes) -> bytes:
    key = next(
        line.split(b":", 1)[1].strip().decode()
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"x-api-key:")
    )
    return response(
        200,
        {**GOOD, "organizationName": f"Org {key}", "rateLimitTier": key[-8:], "apiKeyId": key},
        headers={"X-Request-Id": key},
    )


def echo_in_bad_header(head: bytes) -> bytes:
    # aiohttp's parser refuses the line and quotes it, newlines included, in its message.
    return response(200, GOOD, raw_headers=f"X Echo{FAKE_KEY}: 1\r\n".encode())


def echo_in_bad_status_line(head: bytes) -> bytes:
    return f"HTTP/1.1 2x0 {FAKE_KEY}\r\nContent-Length: 0\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (echo, "billing_exhausted"),
        (echo_in_200, "ok"),
        (echo_in_bad_header, "network_error"),
        (echo_in_bad_status_line, "network_error"),
    ],
)
def test_an_upstream_that_echoes_the_key_leaks_no_fragment_of_it_anywhere(
    reply: Callable[[bytes], bytes], outcome: str, tmp_path: Path
) -> None:
    with watching(tmp_path, *FAST) as (upstream, sc):
        count = upstream.set(reply)
        wait_for(lambda: len(upstream.since(count)) >= 3, what="three echoes")
        wait_for(lambda: sc.get("/status").json()["lastRequestId"] != "req_good", what="the echo")
        assert sc.get("/status").json()["lastOutcome"] == outcome
        seen = "\n".join(
            [
                sc.stderr,
                sc.get("/status").body,
                sc.get("/metrics").body,
                sc.get("/readyz?verbose").body,
            ]
        )
        assert leaks(seen, FAKE_SECRET) == []
        verbose = sc.get("/readyz?verbose").body.splitlines()
        assert verbose.count("readyz check passed") + verbose.count("readyz check failed") == 1
        assert all(isinstance(line, dict) for line in sc.log_events())
        upstream.set(good())
        wait_verdict(sc, 200, "ok")


# Wrong reason: after the key file comes back, the reason says what is wrong now.


def test_after_the_key_file_comes_back_the_reason_is_the_upstreams_failure(
    tmp_path: Path,
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(FAKE_KEY + "\n")
    with (
        hostile(good()) as upstream,
        sidecar(tmp_path, upstream.url, *FAST, key=None, LAYERS_API_KEY_FILE=str(key_file)) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        key_file.unlink()
        wait_verdict(sc, 503, "not ready: key_unavailable")
        upstream.set(response(500, {"error": {"code": "INTERNAL"}}))
        mark = len(sc.log_events())
        key_file.write_text(FAKE_KEY + "\n")
        line = wait_event(sc, "not ready", after=mark, reason="stale", level="error")
        assert "last outcome server_error" in line["detail"]
        wait_verdict(sc, 503, "not ready: stale")
        upstream.set(good())
        wait_verdict(sc, 200, "ok")
        assert_alive(sc)


# Found in a second, adversarial pass (each a case the sidecar once got wrong).


def stated_then_cleared(sc: Process, upstream: Any, reply: bytes, reason: str) -> None:
    mark = len(sc.log_events())
    upstream.set(reply)
    wait_event(sc, "not ready", after=mark, reason=reason, level="error")
    wait_verdict(sc, 503, f"not ready: {reason}")
    assert sc.get("/status").json()["lastOutcome"] == reason
    assert_alive(sc)
    mark = len(sc.log_events())
    upstream.set(good())
    wait_event(sc, "ready", after=mark, reason="ok", level="info")
    wait_verdict(sc, 200, "ok")


# The key format is lp_<env>_<key_id>_<secret>: nothing says the secret has no `_` (base64url
# secrets do). Everything after the key id is secret, not only what follows the last `_`.
UNDERSCORE_SECRET = "FAKEpart_FAKEsecretFAKE"
UNDERSCORE_KEY = f"lp_test_k1_{UNDERSCORE_SECRET}"


def test_a_secret_with_an_underscore_leaks_no_fragment_when_echoed(tmp_path: Path) -> None:
    echo = response(
        402,
        {"error": {"code": "X", "message": f"key {UNDERSCORE_KEY}", "requestId": UNDERSCORE_KEY}},
        headers={"X-Request-Id": f"req {UNDERSCORE_KEY}"},
    )
    with (
        hostile(good()) as upstream,
        sidecar(tmp_path, upstream.url, *FAST, key=UNDERSCORE_KEY) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        upstream.set(echo)
        wait_verdict(sc, 503, "not ready: billing_exhausted")
        wait_for(lambda: sc.get("/status").json()["lastRequestId"] != "req_good", what="the echo")
        seen = "\n".join([sc.stderr, sc.get("/status").body, sc.get("/readyz?verbose").body])
        assert "req lp_test_k1_[redacted]" in seen
        assert leaks(seen, UNDERSCORE_SECRET) == []


# A secret with `+`, `/`, `=` (base64) echoed percent-encoded, as inside a URL: every run
# between the escapes is shorter than the fragment that counts as a leak.
BASE64_SECRET = "FA+KE/se+cr/et+FA/KE="
BASE64_KEY = f"lp_test_k1_{BASE64_SECRET}"


def test_a_percent_encoded_echo_of_the_key_leaks_no_fragment(tmp_path: Path) -> None:
    encoded = quote(BASE64_KEY, safe="")
    echo = response(
        402,
        {"error": {"code": "X", "message": f"see https://x.invalid/?key={encoded}"}},
        headers={"X-Request-Id": "req " + re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), encoded)},
    )
    with hostile(good()) as upstream, sidecar(tmp_path, upstream.url, *FAST, key=BASE64_KEY) as sc:
        wait_verdict(sc, 200, "ok")
        upstream.set(echo)
        wait_verdict(sc, 503, "not ready: billing_exhausted")
        wait_for(lambda: sc.get("/status").json()["lastRequestId"] != "req_good", what="the echo")
        seen = "\n".join([sc.stderr, sc.get("/status").body, sc.get("/readyz?verbose").body])
        assert "?key=lp_test_k1_[redacted]" in seen
        assert leaks(unquote(seen), BASE64_SECRET) == []
        assert "req lp_test_k1_[redacted]" in seen


# An answer with more header lines than any real one: aiohttp bounds their number only from
# 3.13.4 on (max_headers=128); before, 100,000 lines of 8 KiB each were all read into memory.
AIOHTTP_FLOOR = (3, 13, 4)


def test_the_aiohttp_floor_bounds_the_number_of_upstream_header_lines() -> None:
    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("aiohttp")]
    floor = re.search(r">=([0-9.]+)", pins[0])
    assert floor is not None
    assert tuple(int(part) for part in floor[1].split(".")) >= AIOHTTP_FLOOR


def test_an_answer_with_a_hundred_thousand_header_lines_is_refused(tmp_path: Path) -> None:
    flood = "".join(f"X-Pad-{n}: {'v' * 64}\r\n" for n in range(100_000)).encode()
    reply = response(200, GOOD, raw_headers=flood)
    with hostile(good()) as upstream, sidecar(tmp_path, upstream.url, *FAST) as sc:
        wait_verdict(sc, 200, "ok")
        mark = len(sc.log_events())
        upstream.set(reply)
        wait_event(sc, "not ready", after=mark, reason="stale", level="error")
        assert sc.get("/status").json()["lastOutcome"] == "network_error"
        assert_alive(sc)
        upstream.set(good())
        wait_verdict(sc, 200, "ok")


# Through the hub: a switch stated in the first MiB of a longer body is still a hard stop.


def test_through_the_hub_a_switch_stated_in_a_body_over_1mib_is_still_a_hard_stop(
    tmp_path: Path,
) -> None:
    stated = response(200, '{"killSwitch": true, "padding": "' + "x" * (2 * 1024 * 1024) + '"}')
    with (
        hostile(good()) as upstream,
        hub(tmp_path, upstream.url, "--ttl", "200ms") as front,
        sidecar(tmp_path, front.url, *FAST) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        upstream.set(stated)
        wait_verdict(sc, 503, "not ready: kill_switch", timeout=5)


def test_through_the_hub_each_key_gets_its_own_answer_and_no_key_leaks(tmp_path: Path) -> None:
    """Two keys of one organization through one hub, one answered killSwitch: nothing of the
    other's answer crosses over, and neither key shows in the hub's logs or metrics."""
    other_secret = "FAKEotherFAKE"
    other = f"lp_test_k2_{other_secret}"

    def by_key(head: bytes) -> bytes:
        stopped = other.encode() in head
        return response(200, {**GOOD, "killSwitch": stopped})

    (tmp_path / "other").mkdir()
    with (
        hostile(by_key) as upstream,
        hub(tmp_path, upstream.url, "--ttl", "200ms") as front,
        sidecar(tmp_path, front.url, *FAST) as first,
        sidecar(tmp_path / "other", front.url, *FAST, key=other) as second,
    ):
        wait_verdict(first, 200, "ok")
        wait_verdict(second, 503, "not ready: kill_switch")
        wait_for(lambda: len(upstream.requests) >= 20, what="twenty upstream calls")
        assert readyz(first) == (200, "ok")
        assert readyz(second) == (503, "not ready: kill_switch")
        seen = front.stderr + front.get("/metrics").body
        assert leaks(seen, FAKE_SECRET) == []
        assert leaks(seen, other_secret) == []


def _socket_at(path: Path) -> None:
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.close()  # the socket file stays


# Key files that open() refuses: the reason names what is wrong, not just "OSError".
REFUSED_FILES: list[Any] = [
    pytest.param(lambda path: path.symlink_to(path), "symlink loop", id="symlink-loop"),
    pytest.param(_socket_at, "it is a socket", id="socket"),
]


@pytest.mark.parametrize(("make", "detail"), REFUSED_FILES)
def test_odd_key_file(tmp_path: Path, make: Callable[[Path], Any], detail: str) -> None:
    key_file = tmp_path / "k"
    key_file.write_text(FAKE_KEY + "\n")
    with (
        hostile(good()) as upstream,
        sidecar(tmp_path, upstream.url, *FAST, key=None, LAYERS_API_KEY_FILE=str(key_file)) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        mark = len(sc.log_events())
        key_file.unlink()
        make(key_file)
        line = wait_event(sc, "not ready", after=mark, level="error", reason="key_unavailable")
        assert detail in line["detail"]
        assert detail in sc.get("/readyz?verbose").body
        mark = len(sc.log_events())
        key_file.unlink()
        key_file.write_text(FAKE_KEY + "\n")
        wait_event(sc, "ready", after=mark, level="info")
        assert_alive(sc)


# RFC 9110 §5.6.7: a recipient must accept the two obsolete HTTP-date forms too. Unread, a
# Retry-After in either fell back to the back-off: calls every 0.1-0.2 s where 2 s was asked.
OBSOLETE_DATES = [
    pytest.param("%A, %d-%b-%y %H:%M:%S GMT", id="rfc850"),
    pytest.param("%a %b %e %H:%M:%S %Y", id="asctime"),
]


@pytest.mark.parametrize("form", OBSOLETE_DATES)
def test_a_retry_after_in_an_obsolete_date_form_is_honoured(form: str, tmp_path: Path) -> None:
    def limited(head: bytes) -> bytes:
        when = datetime.fromtimestamp(time.time() + 5, UTC).strftime(form)
        return response(429, b"", headers={"Retry-After": when})

    with hostile(good()) as upstream, sidecar(tmp_path, upstream.url, *FAST) as sc:
        wait_verdict(sc, 200, "ok")
        mark = upstream.set(limited)
        wait_for(lambda: len(upstream.since(mark)) >= 3, timeout=15, what="three calls")
        times = [request.at for request in upstream.since(mark)[:3]]
        # Asked for 5 s, clamped to 10 x --interval (2 s): never the 0.1-0.2 s of the back-off.
        assert min(b - a for a, b in itertools.pairwise(times)) >= 1.5
        upstream.set(good())
        wait_verdict(sc, 200, "ok")


def cut(status: int, start: bytes) -> bytes:
    """An answer that promises 100,000 bytes of body and sends only `start`."""
    return f"HTTP/1.1 {status} Cut\r\nContent-Length: 100000\r\n\r\n".encode() + start


CUT_SHORT = [
    pytest.param(
        cut(200, b'{"killSwitch": true, "padding": "xxx'), 0.0, "kill_switch", id="200-reset"
    ),
    pytest.param(
        cut(200, b'{"apiAccessRevoked": true, "pad'), 5.0, "access_revoked", id="200-stall"
    ),
    pytest.param(
        cut(503, b'{"error": {"code": "KILL_SWITCH", "message": "'),
        5.0,
        "kill_switch",
        id="503-stall",
    ),
]


@pytest.mark.parametrize(("reply", "hold", "reason"), CUT_SHORT)
def test_a_switch_stated_before_the_body_is_cut_short_still_wins(
    reply: bytes, hold: float, reason: str, tmp_path: Path
) -> None:
    """A body that states a switch and then stalls past --timeout, or is reset, was a timeout
    or a network error (transient, ready for --stale-after): the stated switch wins."""
    with hostile(good()) as upstream, sidecar(tmp_path, upstream.url, *FAST) as sc:
        wait_verdict(sc, 200, "ok")
        upstream.hold_open = hold
        stated_then_cleared(sc, upstream, reply, reason)


@pytest.mark.parametrize(("reply", "hold", "reason"), CUT_SHORT)
def test_through_the_hub_a_switch_stated_before_the_body_is_cut_short_still_wins(
    reply: bytes, hold: float, reason: str, tmp_path: Path
) -> None:
    """The same cut bodies through a hub: it passes on the status and the part it read, not a
    504 or 502 the sidecar would ride out as transient; its per-key gauge shows the switch."""
    with (
        hostile(good()) as upstream,
        # Under the sidecar's 1 s, so that the hub's answer, not the sidecar's own timeout, lands.
        hub(tmp_path, upstream.url, "--ttl", "200ms", "--timeout", "500ms") as front,
        sidecar(tmp_path, front.url, *FAST) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        upstream.hold_open = hold
        mark = len(sc.log_events())
        upstream.set(reply)
        wait_verdict(sc, 503, f"not ready: {reason}")
        wait_event(sc, "not ready", after=mark, level="error", reason=reason)
        gauge = (
            "layers_hub_kill_switch" if reason == "kill_switch" else "layers_hub_api_access_revoked"
        )
        assert sample(front.get("/metrics").body, gauge, api_key_id=GOOD["apiKeyId"]) == 1
        upstream.set(good())
        wait_verdict(sc, 200, "ok")
        assert_alive(sc)


def test_through_the_hub_a_revocation_stated_in_a_malformed_200_shows_in_its_gauge(
    tmp_path: Path,
) -> None:
    """A 200 that states apiAccessRevoked but lacks other fields stops the sidecar, and the
    hub's per-key gauge says so, as it does for the kill switch."""
    with (
        hostile(good()) as upstream,
        hub(tmp_path, upstream.url, "--ttl", "200ms") as front,
        sidecar(tmp_path, front.url, *FAST) as sc,
    ):
        wait_verdict(sc, 200, "ok")
        labels = {"api_key_id": GOOD["apiKeyId"], "organization_id": GOOD["organizationId"]}
        assert sample(front.get("/metrics").body, "layers_hub_api_access_revoked", **labels) == 0
        upstream.set(response(200, members(("apiAccessRevoked", True))))
        wait_verdict(sc, 503, "not ready: access_revoked")
        metrics = front.get("/metrics").body
        assert sample(metrics, "layers_hub_api_access_revoked", **labels) == 1
        assert sample(metrics, "layers_hub_kill_switch", **labels) == 0
        assert sample(metrics, "layers_hub_credit_balance", **labels) == GOOD["creditBalance"]
