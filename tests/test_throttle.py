"""The one log-then-throttle helper, on a fake clock: the first report goes through, then at
most one per period with a count; runs of one kind at a time for the poll loop's failures."""

from __future__ import annotations

from sidecar.throttle import REPEAT_LOG_EVERY, Tally, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_report_a_second_goes_through_and_counts_the_rest() -> None:
    clock = Clock()
    throttle = Throttle(1.0, clock)
    assert throttle.note() == Tally(run=1, held=0)
    assert [throttle.note() for _ in range(5)] == [None] * 5
    clock.now = 1.0
    assert throttle.note() == Tally(run=7, held=5)  # the line let through says how many were held


def test_kinds_are_throttled_apart() -> None:
    clock = Clock()
    throttle = Throttle(REPEAT_LOG_EVERY, clock)
    assert throttle.note("busy") == Tally(1, 0)
    assert throttle.note("timeout") == Tally(1, 0)
    assert throttle.note("busy") is None
    clock.now = REPEAT_LOG_EVERY
    assert throttle.note("busy") == Tally(3, 1)
    throttle.end("busy")
    assert throttle.note("busy") == Tally(1, 0)  # a run that ended starts afresh, logged at once


def test_repeated_failures_are_logged_at_start_then_once_a_minute() -> None:
    clock = Clock()
    runs = Throttle(REPEAT_LOG_EVERY, clock)
    assert runs.only("timeout") == Tally(1, 0)
    clock.now = 30
    assert runs.only("timeout") is None
    clock.now = REPEAT_LOG_EVERY
    assert runs.only("timeout") == Tally(3, 1)
    clock.now = 61
    assert runs.only("server_error") == Tally(1, 0)  # a different failure starts a new run
    clock.now = 62
    assert runs.only(None) is None  # no trouble: never logged, and every run ends
    clock.now = 63
    assert runs.only("server_error") == Tally(1, 0)
