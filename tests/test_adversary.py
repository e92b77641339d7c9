"""A second, adversarial pass over the hostile-upstream cases: real processes on loopback.

Each case is something `tests/test_hostile.py` did not try and the sidecar got wrong: the
verdict `/readyz` gives, the log line that says why, and recovery once the fault is gone.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from tests.hostile import (
    GOOD,
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
    hub,
    readyz,
    sample,
    sidecar,
    wait_event,
    wait_for,
    wait_verdict,
)

pytestmark = pytest.mark.faults

FAST = ("--interval", "200ms", "--timeout", "1s", "--stale-after", "0")


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


DEEP = "[" * 100_000 + "]" * 100_000
GOOD_TEXT = json.dumps(GOOD)[1:-1]

# A switch stated after a member that does not parse, or in an encoding json.loads reads.
HIDDEN_SWITCHES = [
    pytest.param(
        response(200, '{"pad": ' + DEEP + ', "killSwitch": true}'),
        "kill_switch",
        id="after-a-member-nested-100k-deep",
    ),
    pytest.param(
        response(200, "{" + GOOD_TEXT + ', "debug": undefined, "apiAccessRevoked": true}'),
        "access_revoked",
        id="after-a-literal-json-lacks",
    ),
    pytest.param(
        response(200, b"\xef\xbb\xbf" + json.dumps({**GOOD, "killSwitch": True}).encode()),
        "kill_switch",
        id="behind-a-utf8-bom",
    ),
    pytest.param(
        response(200, json.dumps({**GOOD, "killSwitch": True}).encode("utf-16")),
        "kill_switch",
        id="in-utf16",
    ),
    pytest.param(
        response(503, '{"error": {"details": ' + DEEP + ', "code": "KILL_SWITCH"}}'),
        "kill_switch",
        id="503-code-after-deep-details",
    ),
    pytest.param(
        response(503, '{"error": {"details": nope, "code": "KILL_\\u0053WITCH"}}'),
        "kill_switch",
        id="503-code-escaped-after-garbage",
    ),
]


@pytest.mark.parametrize(("reply", "reason"), HIDDEN_SWITCHES)
def test_a_switch_stated_after_an_unparseable_member_or_in_utf16_is_still_a_hard_stop(
    reply: bytes, reason: str, tmp_path: Path
) -> None:
    with hostile(good()) as upstream, sidecar(tmp_path, upstream.url, *FAST) as sc:
        wait_verdict(sc, 200, "ok")
        stated_then_cleared(sc, upstream, reply, reason)


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
