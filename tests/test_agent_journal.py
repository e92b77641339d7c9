"""The log policy, fed plain events: one line per event, repeats bounded, the key always named."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from sidecar.agent.journal import Journal, identity
from sidecar.outcome import Outcome, Result
from sidecar.readiness import STARTING, Event, Reason, State, Verdict
from tests.support import WHOAMI_PARSED

READY = Verdict(True, Reason.OK)
Logs = list[MutableMapping[str, Any]]


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_logs() as captured:
        yield captured


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def journal(clock: FakeTime) -> Journal:
    return Journal(structlog.get_logger(), mono=clock)


def answer(outcome: Outcome, state: State, verdict: Verdict, **fields: Any) -> Event:
    return Event(state, verdict, Result(outcome, **fields), elapsed=0.05)


def test_identity_names_the_key_and_leaves_out_what_is_unknown() -> None:
    assert identity(State()) == {}
    assert identity(State(key_fingerprint="ab12cd34"), "req_1") == {
        "keyFingerprint": "ab12cd34",
        "requestId": "req_1",
    }
    assert identity(State(whoami=WHOAMI_PARSED, key_fingerprint="ab12cd34")) == {
        "apiKeyId": "key-1",
        "organizationId": "org-1",
    }


def test_a_good_poll_that_changes_nothing_is_debug(journal: Journal, logs: Logs) -> None:
    state = State(whoami=WHOAMI_PARSED)
    journal(answer(Outcome.OK, state, READY))
    journal(answer(Outcome.OK, state, READY))
    assert [(e["event"], e["log_level"]) for e in logs] == [("ready", "info"), ("whoami", "debug")]
    assert "apiKeyId=None" not in str(logs)
    assert None not in logs[1].values()


def test_a_hard_stop_is_one_error_line_with_its_cause(journal: Journal, logs: Logs) -> None:
    state = State(key_fingerprint="ab12cd34")
    verdict = Verdict(False, Reason.UNAUTHENTICATED, "HTTP 401 UNAUTHENTICATED")
    journal(
        answer(
            Outcome.UNAUTHENTICATED,
            state,
            verdict,
            status=401,
            detail="HTTP 401 UNAUTHENTICATED",
            request_id="req_9",
        )
    )
    [line] = logs
    assert line["event"] == "not ready"
    assert line["log_level"] == "error"
    assert (line["reason"], line["outcome"], line["status"]) == ("unauthenticated",) * 2 + (401,)
    assert line["requestId"] == "req_9"
    assert line["keyFingerprint"] == "ab12cd34"
    assert "apiKeyId" not in line


def test_a_repeated_failure_is_bounded_with_a_count(
    journal: Journal, logs: Logs, clock: FakeTime
) -> None:
    state = State(whoami=WHOAMI_PARSED)
    journal(answer(Outcome.OK, state, READY))
    for _ in range(10):
        journal(answer(Outcome.SERVER_ERROR, state, READY, status=500, detail="HTTP 500"))
        clock.now += 10
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["repeated"] for e in warnings] == [1, 7]  # its start, then a minute later


def test_an_empty_key_file_then_a_missing_one_are_two_lines(journal: Journal, logs: Logs) -> None:
    unavailable = Verdict(False, Reason.KEY_UNAVAILABLE, "")
    for detail in ("key file /k is empty", "key file /k is empty", "key file /k does not exist"):
        journal(Event(State(), unavailable, key_error=detail))
    shown = [(e["event"], e["detail"]) for e in logs if e["log_level"] != "debug"]
    assert shown == [
        ("not ready", "key file /k is empty"),
        ("api key unavailable", "key file /k does not exist"),  # a new cause, a new line
    ]


def test_a_new_key_is_logged_and_named_by_its_fingerprint(journal: Journal, logs: Logs) -> None:
    journal(answer(Outcome.OK, State(whoami=WHOAMI_PARSED, key_fingerprint="aaaa1111"), READY))
    # The rotated key fails: the line must not carry the old key's apiKeyId.
    rotated = State(key_fingerprint="bbbb2222")
    verdict = Verdict(False, Reason.UNAUTHENTICATED, "HTTP 401")
    journal(answer(Outcome.UNAUTHENTICATED, rotated, verdict, status=401))
    events = [e["event"] for e in logs]
    assert events == ["ready", "api key changed", "not ready"]
    changed, failed = logs[1], logs[2]
    assert changed["keyFingerprint"] == "bbbb2222"
    assert failed["keyFingerprint"] == "bbbb2222"
    assert "apiKeyId" not in failed


def test_going_stale_without_a_new_answer_is_logged(journal: Journal, logs: Logs) -> None:
    state = State(whoami=WHOAMI_PARSED, last_request_id="req_3")
    journal(answer(Outcome.OK, state, READY))
    journal(Event(state, Verdict(False, Reason.STALE, "no good answer for 90s")))
    assert logs[-1]["event"] == "not ready"
    assert logs[-1]["reason"] == "stale"
    assert logs[-1]["apiKeyId"] == "key-1"
    assert logs[-1]["requestId"] == "req_3"


def test_nothing_is_logged_for_a_verdict_that_stays(journal: Journal, logs: Logs) -> None:
    journal(Event(State(), STARTING))
    assert logs == []
