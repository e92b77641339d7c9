"""The outcome table of SPEC.md, row by row, without a network."""

from __future__ import annotations

import json

import pytest

from sidecar.outcome import Answer, Failure, Outcome, classify
from tests.support import WHOAMI, error, ok

NOW = 1_800_000_000.0


def test_a_healthy_key_is_ok_and_keeps_every_field() -> None:
    result = classify(ok(), NOW)
    assert result.outcome is Outcome.OK
    assert result.whoami is not None
    assert result.whoami.organization_name == "Acme Growth"
    assert result.whoami.credit_balance == 2540
    assert (result.kill_switch, result.access_revoked) == (False, False)


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        (ok(killSwitch=True), Outcome.KILL_SWITCH),
        (ok(apiAccessRevoked=True), Outcome.ACCESS_REVOKED),
        (error(503, "KILL_SWITCH"), Outcome.KILL_SWITCH),
        (error(401, "UNAUTHENTICATED"), Outcome.UNAUTHENTICATED),
        (
            error(402, "BILLING_EXHAUSTED", details={"minTier": "partner"}),
            Outcome.BILLING_EXHAUSTED,
        ),
        (error(403, "FORBIDDEN"), Outcome.CLIENT_ERROR),
        (error(404, "NOT_FOUND"), Outcome.CLIENT_ERROR),
        (error(418), Outcome.CLIENT_ERROR),
        (error(408), Outcome.SERVER_ERROR),
        (error(421), Outcome.SERVER_ERROR),
        (error(425), Outcome.SERVER_ERROR),
        (Answer(status=302), Outcome.CLIENT_ERROR),
        (error(429, "RATE_LIMITED"), Outcome.RATE_LIMITED),
        (error(500, "INTERNAL"), Outcome.SERVER_ERROR),
        (error(502), Outcome.SERVER_ERROR),
        (error(503, "UNAVAILABLE"), Outcome.SERVER_ERROR),
        (Answer(status=503, body=b"<html>busy</html>"), Outcome.SERVER_ERROR),
        (Answer(failure=Failure.TIMEOUT), Outcome.TIMEOUT),
        (Answer(failure=Failure.NETWORK, detail="refused"), Outcome.NETWORK_ERROR),
        (Answer(status=200, body=b"not json"), Outcome.INVALID_RESPONSE),
        (Answer(status=200, body=b"[]"), Outcome.INVALID_RESPONSE),
        (Answer(status=204), Outcome.INVALID_RESPONSE),
        (Answer(status=200, body=b"{" * 10, too_large=True), Outcome.INVALID_RESPONSE),
    ],
)
def test_the_outcome_table(answer: Answer, outcome: Outcome) -> None:
    assert classify(answer, NOW).outcome is outcome


def test_hard_stops_and_transients_partition_the_failures() -> None:
    hard = {o for o in Outcome if o.hard_stop}
    transient = {o for o in Outcome if o.transient}
    assert hard == {
        Outcome.KILL_SWITCH,
        Outcome.ACCESS_REVOKED,
        Outcome.UNAUTHENTICATED,
        Outcome.BILLING_EXHAUSTED,
        Outcome.CLIENT_ERROR,
    }
    assert hard | transient | {Outcome.OK} == set(Outcome)
    assert not hard & transient


def test_branching_is_on_code_never_on_message() -> None:
    answer = error(503, "UNAVAILABLE")
    body = json.loads(answer.body)
    body["error"]["message"] = "KILL_SWITCH engaged"
    assert classify(Answer(status=503, body=json.dumps(body).encode()), NOW).outcome is (
        Outcome.SERVER_ERROR
    )


def test_an_error_body_that_is_not_json_counts_by_its_status() -> None:
    assert classify(Answer(status=401, body=b"nope"), NOW).outcome is Outcome.UNAUTHENTICATED
    assert classify(Answer(status=402, body=b""), NOW).outcome is Outcome.BILLING_EXHAUSTED


def test_billing_exhausted_keeps_min_tier() -> None:
    result = classify(error(402, "BILLING_EXHAUSTED", details={"minTier": "partner"}), NOW)
    assert result.min_tier == "partner"


def test_a_200_with_a_switch_still_states_who_the_key_is() -> None:
    result = classify(ok(killSwitch=True, creditBalance=5), NOW)
    assert result.whoami is not None
    assert result.whoami.credit_balance == 5
    assert result.kill_switch is True
    assert classify(error(503, "KILL_SWITCH"), NOW).kill_switch is True
    assert classify(error(401), NOW).kill_switch is None
    assert classify(Answer(failure=Failure.TIMEOUT), NOW).kill_switch is None


def test_headers_are_kept() -> None:
    answer = Answer(
        status=200,
        body=ok().body,
        headers={
            "X-Request-Id": "req_01ABC",
            "X-RateLimit-Limit": "600",
            "X-RateLimit-Remaining": "599",
        },
    )
    result = classify(answer, NOW)
    assert result.request_id == "req_01ABC"
    assert (result.rate_limit_limit, result.rate_limit_remaining) == (600, 599)


def test_the_request_id_of_an_error_body_is_used_when_the_header_is_missing() -> None:
    assert classify(error(401, "UNAUTHENTICATED"), NOW).request_id == "req_1"


def test_a_429_carries_its_wait() -> None:
    answer = Answer(status=429, body=b"{}", headers={"Retry-After": "3"})
    assert classify(answer, NOW).retry_after == 3


@pytest.mark.parametrize("balance", ["1e400", "-1e400", "1" + "0" * 400])
def test_numbers_beyond_a_float_are_invalid_not_a_crash(balance: str) -> None:
    body = json.dumps(WHOAMI).replace('"creditBalance": 2540', f'"creditBalance": {balance}')
    result = classify(Answer(status=200, body=body.encode()), NOW)
    assert result.outcome is Outcome.INVALID_RESPONSE
    assert "creditBalance" in result.detail


# Hostile bodies, classified in process: a switch stated where only a lenient reader finds it.

DEEP = "[" * 100_000 + "]" * 100_000
GOOD_TEXT = json.dumps(WHOAMI)[1:-1]

HIDDEN_SWITCHES = [
    pytest.param(
        200, '{"pad": ' + DEEP + ', "killSwitch": true}', Outcome.KILL_SWITCH, id="after-deep"
    ),
    pytest.param(
        200,
        "{" + GOOD_TEXT + ', "debug": undefined, "apiAccessRevoked": true}',
        Outcome.ACCESS_REVOKED,
        id="after-a-literal-json-lacks",
    ),
    pytest.param(
        200,
        b"\xef\xbb\xbf" + json.dumps({**WHOAMI, "killSwitch": True}).encode(),
        Outcome.KILL_SWITCH,
        id="behind-a-utf8-bom",
    ),
    pytest.param(
        200,
        json.dumps({**WHOAMI, "killSwitch": True}).encode("utf-16"),
        Outcome.KILL_SWITCH,
        id="in-utf16",
    ),
    pytest.param(
        503,
        '{"error": {"details": ' + DEEP + ', "code": "KILL_SWITCH"}}',
        Outcome.KILL_SWITCH,
        id="503-code-after-deep-details",
    ),
    pytest.param(
        503,
        '{"error": {"details": nope, "code": "KILL_\\u0053WITCH"}}',
        Outcome.KILL_SWITCH,
        id="503-code-escaped-after-garbage",
    ),
]


@pytest.mark.parametrize(("status", "body", "outcome"), HIDDEN_SWITCHES)
def test_a_switch_stated_after_an_unparseable_member_or_in_utf16_is_a_hard_stop(
    status: int, body: str | bytes, outcome: Outcome
) -> None:
    data = body.encode() if isinstance(body, str) else body
    result = classify(Answer(status=status, body=data), NOW)
    assert result.outcome is outcome
    assert result.outcome.hard_stop


CUT_SHORT = [
    pytest.param(
        200, b'{"killSwitch": true, "padding": "xxx', Failure.NETWORK, Outcome.KILL_SWITCH
    ),
    pytest.param(200, b'{"apiAccessRevoked": true, "pad', Failure.TIMEOUT, Outcome.ACCESS_REVOKED),
    pytest.param(
        503,
        b'{"error": {"code": "KILL_SWITCH", "message": "',
        Failure.TIMEOUT,
        Outcome.KILL_SWITCH,
    ),
]


@pytest.mark.parametrize(("status", "body", "failure", "outcome"), CUT_SHORT)
def test_a_switch_stated_before_the_body_is_cut_short_wins_over_the_failure(
    status: int, body: bytes, failure: Failure, outcome: Outcome
) -> None:
    answer = Answer(status=status, body=body, failure=failure, detail="cut")
    assert classify(answer, NOW).outcome is outcome
