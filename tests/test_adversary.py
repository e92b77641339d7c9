"""A second, adversarial pass over the hostile-upstream cases: real processes on loopback.

Each case is something `tests/test_hostile.py` did not try and the sidecar got wrong: the
verdict `/readyz` gives, the log line that says why, and recovery once the fault is gone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.hostile import (
    GOOD,
    assert_alive,
    good,
    hostile,
    leaks,
    response,
    wait_event,
    wait_verdict,
)
from tests.support import Process, sidecar, wait_for

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
