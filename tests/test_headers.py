"""Retry-After and X-RateLimit-Reset, parsed strictly: the RFC 9110 forms and nothing else."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import pytest

from sidecar.headers import requested_wait

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "7"}, 7),
        ({"Retry-After": "7", "X-RateLimit-Reset": "50"}, 7),
        ({"X-RateLimit-Reset": "50"}, 50),
        ({"X-RateLimit-Reset": str(NOW + 12)}, 12),
        ({"X-RateLimit-Reset": str(NOW - 12)}, 0),
        ({}, None),
    ],
)
def test_how_long_a_429_waits(headers: dict[str, str], wait: float | None) -> None:
    assert requested_wait(headers, NOW) == (wait, False)


@pytest.mark.parametrize(
    "retry_after",
    ["soon", "1_000", "1e3", "-5", "+5", "5.5", "0x10", "٣", "Thu, 99 Jan 2027 08:00:00 GMT"],
)
def test_a_wait_in_a_form_the_rfc_does_not_allow_is_unreadable(retry_after: str) -> None:
    assert requested_wait({"Retry-After": retry_after}, NOW) == (None, True)


@pytest.mark.parametrize(
    ("retry_after", "wait"),
    [
        ("0", 0),
        (" 7 ", 7),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799 - NOW),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 0),  # in the past
        ("1" * 40, 1e12),  # longer than any delay: as far as allowed, and never a crash
    ],
)
def test_extreme_waits_parse_to_what_they_say(retry_after: str, wait: float) -> None:
    got, unreadable = requested_wait({"Retry-After": retry_after}, NOW)
    assert got == pytest.approx(wait)
    assert not unreadable


def test_retry_after_may_be_an_http_date() -> None:
    now = parsedate_to_datetime("Fri, 15 Jan 2027 08:00:00 GMT").timestamp()
    headers = {"Retry-After": "Fri, 15 Jan 2027 08:00:05 GMT"}
    assert requested_wait(headers, now)[0] == pytest.approx(5)
