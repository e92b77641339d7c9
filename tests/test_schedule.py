"""When the next whoami is due: back-off, 429 waits, adaptive polling, and their bounds. Pure."""

from __future__ import annotations

import math
from typing import Final

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sidecar.outcome import Answer, Outcome, classify
from sidecar.schedule import (
    CEILING_INTERVALS,
    backoff_step,
    bounded,
    delay_after,
    fallback,
    next_delay,
    quota_low,
)

NOW: Final = 1_800_000_000.0


def test_good_answers_and_hard_stops_keep_the_interval() -> None:
    for outcome in (Outcome.OK, Outcome.KILL_SWITCH, Outcome.UNAUTHENTICATED, None):
        assert next_delay(outcome, failures=5, interval=30, retry_after=None) == 30


def test_transients_back_off_exponentially_with_jitter_never_past_the_interval() -> None:
    def delays(rand: float) -> list[float]:
        return [
            next_delay(
                Outcome.TIMEOUT, failures=n, interval=30, retry_after=None, rand=lambda: rand
            )
            for n in range(1, 9)
        ]

    assert delays(1.0) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert delays(0.0) == [0.5, 1, 2, 4, 8, 15, 15, 15]
    assert next_delay(Outcome.SERVER_ERROR, failures=1, interval=0.2, retry_after=None) <= 0.2


def test_a_429_waits_for_what_the_upstream_asked_even_past_the_interval() -> None:
    assert next_delay(Outcome.RATE_LIMITED, failures=1, interval=30, retry_after=120) == 120
    assert next_delay(Outcome.RATE_LIMITED, failures=1, interval=30, retry_after=None) == 30


def wait_after_429(headers: dict[str, str], failures: int = 1, rand: float = 0.0) -> float:
    result = classify(Answer(status=429, body=b"{}", headers=headers), NOW)
    return delay_after(result, failures=failures, interval=30, rand=lambda: rand)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        # No hot loop: "now", the past and 0 wait as long as the back-off would (0.5-1 s).
        pytest.param({"Retry-After": "0"}, 0.5, id="retry-after-0"),
        pytest.param({"Retry-After": "Sun, 06 Nov 1994 08:49:37 GMT"}, 0.5, id="date-in-past"),
        pytest.param({"X-RateLimit-Reset": str(NOW - 60)}, 0.5, id="reset-in-past"),
        # Never stop polling: at most ten intervals, however far the upstream asks.
        pytest.param({"Retry-After": "1000000000000"}, 300, id="retry-after-1e12-digits"),
        pytest.param({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, 300, id="year-9999"),
        pytest.param({"X-RateLimit-Reset": str(int(NOW * 1000))}, 300, id="reset-in-ms"),
        # Not parsed strictly: the back-off, not a misreading.
        pytest.param({"Retry-After": "1_000"}, 0.5, id="underscore"),
        pytest.param({"Retry-After": "1e12"}, 0.5, id="exponent"),
        pytest.param({"Retry-After": "Thu, 99 Jan 2027 08:00:00 GMT"}, 0.5, id="absurd-date"),
        pytest.param({"Retry-After": "\ud800"}, 0.5, id="lone-surrogate"),
        # Within bounds: as asked.
        pytest.param({"Retry-After": "12"}, 12, id="retry-after-12"),
        pytest.param({}, 30, id="nothing-asked"),
    ],
)
def test_every_wait_a_429_asks_for_is_parsed_strictly_and_bounded(
    headers: dict[str, str], wait: float
) -> None:
    assert wait_after_429(headers) == pytest.approx(wait)


def test_the_floor_of_a_429_wait_grows_with_the_back_off() -> None:
    floors = [wait_after_429({"Retry-After": "0"}, failures=n, rand=1.0) for n in range(1, 8)]
    assert floors == [1, 2, 4, 8, 16, 30, 30]


def test_low_quota_waits_for_the_reset_plus_jitter_on_any_answer() -> None:
    headers = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "9", "X-RateLimit-Reset": "90"}
    good = classify(
        Answer(status=200, body=b"{}", headers=headers), NOW
    )  # invalid body, yet the quota still counts
    assert delay_after(good, failures=1, interval=30, rand=lambda: 0.0) == 90
    assert delay_after(good, failures=1, interval=30, rand=lambda: 1.0) == 120
    # 10% or more left: the normal schedule.
    plenty = {**headers, "X-RateLimit-Remaining": "10"}
    result = classify(Answer(status=500, headers=plenty), NOW)
    assert delay_after(result, failures=1, interval=30, rand=lambda: 1.0) == 1
    # A reset further than ten intervals is bounded like every other wait.
    far = {**headers, "X-RateLimit-Reset": str(NOW + 86400)}
    result = classify(Answer(status=200, headers=far), NOW)
    assert delay_after(result, failures=0, interval=30) == 300


def test_low_quota_never_polls_sooner_than_the_normal_schedule() -> None:
    soon = {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "2"}
    result = classify(Answer(status=401, headers=soon), NOW)
    assert delay_after(result, failures=1, interval=30, rand=lambda: 0.0) == 30


@pytest.mark.parametrize(
    ("limit", "remaining", "low"),
    [(100, 9, True), (100, 10, False), (0, 0, False), (None, 1, False), (100, None, False)],
)
def test_quota_low(limit: float | None, remaining: float | None, low: bool) -> None:
    assert quota_low(limit, remaining) is low


def test_bounded_clamps_and_treats_nan_as_the_floor() -> None:
    assert bounded(5, 1, 10) == 5
    assert bounded(0, 1, 10) == 1
    assert bounded(math.inf, 1, 10) == 10
    assert bounded(math.nan, 1, 10) == 1


# Properties: whatever the upstream sends, the next call is within [floor, ceiling].

header_values = st.text(max_size=40) | st.sampled_from(
    [
        "0",
        "-1",
        "1e400",
        "nan",
        "inf",
        "1_000",
        "9" * 5000,
        str(NOW - 5),
        str(NOW + 5),
        str(int(NOW * 1000)),
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Thu, 99 Jan 2027 25:61:61 GMT",
        "\ud800",
    ]
)
rate_headers = st.dictionaries(
    st.sampled_from(
        [
            "Retry-After",
            "X-RateLimit-Reset",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-Request-Id",
        ]
    ),
    header_values,
)


@given(
    rate_headers,
    st.integers(min_value=0, max_value=999) | st.none(),
    st.integers(min_value=0, max_value=200),
    st.sampled_from([0.2, 1.0, 30.0, 3600.0]),
    st.floats(min_value=0, max_value=1),
)
@example({"Retry-After": "0"}, 429, 1, 30.0, 0.0)
@example({"Retry-After": "9" * 5000}, 429, 1, 30.0, 1.0)
@example({"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}, 200, 0, 30.0, 1.0)
def test_for_any_headers_and_status_the_next_delay_is_within_floor_and_ceiling(
    headers: dict[str, str], status: int | None, failures: int, interval: float, rand: float
) -> None:
    answer = Answer(status=status, headers=headers) if status is not None else Answer()
    result = classify(answer, NOW)
    delay = delay_after(result, failures=failures, interval=interval, rand=lambda: rand)
    floor = backoff_step(failures, interval) / 2
    assert math.isfinite(delay)
    assert floor <= delay <= CEILING_INTERVALS * interval, (result, delay)
    if result.outcome.transient:
        assert delay >= floor
    if result.retry_after is not None:
        assert math.isfinite(result.retry_after)
        assert result.retry_after >= 0


@given(
    rand=st.floats(0, 1),
    fallback_interval=st.floats(0.01, 3600),
    timeout=st.floats(0.01, 600),
    asked=st.floats(0, 7200),
)
def test_fallback_mode_is_never_more_often_than_the_interval_and_keeps_the_detection_bound(
    rand: float, fallback_interval: float, timeout: float, asked: float
) -> None:
    step = fallback(asked, fallback_interval=fallback_interval, timeout=timeout, rand=lambda: rand)
    assert step.delay >= max(asked, fallback_interval)  # N x 60 / interval a minute at most
    assert 0 < step.hub_timeout <= timeout  # no poll waits on a black hole past one --timeout
    if asked <= fallback_interval:
        # The wait, then the hub's try, then the fallback's call: the kill switch's bound.
        assert step.delay + step.hub_timeout + timeout <= fallback_interval + 2 * timeout + 1e-9


def test_fallback_mode_spreads_a_fleet() -> None:
    low = fallback(1, fallback_interval=30, timeout=10, rand=lambda: 0.0)
    high = fallback(1, fallback_interval=30, timeout=10, rand=lambda: 1.0)
    assert (low.delay, low.hub_timeout) == (30, 10)
    assert (high.delay, high.hub_timeout) == (33, 7)
