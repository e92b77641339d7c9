"""The hub's upstream side, without a process: which upstream headers pass, and what a failed
upstream call becomes."""

from __future__ import annotations

import json

import pytest

from sidecar.hub.upstream import MAX_PASSED_BODY, passed, stored
from sidecar.outcome import Answer, Failure, classify


def test_only_the_headers_a_sidecar_reads_pass() -> None:
    for name in (
        "Content-Type",
        "X-Request-Id",
        "x-request-id",
        "X-Layers-Api-Version",
        "Retry-After",
        "X-RateLimit-Limit",
        "X-RateLimit-Endpoint-Class",
        "x-ratelimit-tier",
    ):
        assert passed(name), name
    for name in ("Set-Cookie", "Server", "Date", "Content-Length", "Connection", "Location"):
        assert not passed(name), name


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (Answer(failure=Failure.TIMEOUT), 504, "UPSTREAM_TIMEOUT"),
        (Answer(failure=Failure.NETWORK, detail="refused"), 502, "UPSTREAM_UNAVAILABLE"),
        (
            Answer(status=200, body=b"x" * MAX_PASSED_BODY, too_large=True),
            502,
            "UPSTREAM_UNAVAILABLE",
        ),
    ],
)
def test_a_failed_call_becomes_the_hubs_own_error(answer: Answer, status: int, code: str) -> None:
    result = stored(answer, classify(answer, 0.0))
    assert (result.status, result.hub_error) == (status, True)
    error = json.loads(result.body)["error"]
    assert error["code"] == code
    assert dict(result.headers)["X-Request-Id"] == error["requestId"]


def test_an_upstream_answer_passes_unchanged() -> None:
    body = b'{"error": {"code": "INTERNAL"}}'
    answer = Answer(status=500, body=body, headers={"X-Request-Id": "req_1"})
    result = stored(answer, classify(answer, 0.0))
    assert (result.status, result.body, result.hub_error) == (500, body, False)
    assert result.headers == (("X-Request-Id", "req_1"),)


STATED = b'{"killSwitch": true, "padding": "'


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            Answer(status=200, body=STATED + b"x" * MAX_PASSED_BODY, too_large=True),
            id="over-1mib",
        ),
        pytest.param(Answer(status=200, body=STATED, failure=Failure.TIMEOUT), id="200-stall"),
        pytest.param(Answer(status=200, body=STATED, failure=Failure.NETWORK), id="200-reset"),
        pytest.param(
            Answer(
                status=503, body=b'{"error": {"code": "KILL_SWITCH", "mes', failure=Failure.NETWORK
            ),
            id="503-reset",
        ),
    ],
)
def test_a_stated_switch_passes_on_with_the_part_that_was_read(answer: Answer) -> None:
    result = stored(answer, classify(answer, 0.0))
    assert (result.status, result.hub_error) == (answer.status, False)
    assert result.body == answer.body[:MAX_PASSED_BODY]
    # What the sidecar makes of it: the same hard stop as going direct.
    assert classify(Answer(status=result.status, body=result.body), 0.0).outcome.hard_stop
