"""Outcomes over time → verdicts: hard stops, --stale-after, --min-credits, on a fake clock."""

from __future__ import annotations

import json

import pytest

from sidecar.outcome import Answer, Failure, Outcome, Result, classify
from sidecar.readiness import (
    HARD_STOP_REASONS,
    Instant,
    Reason,
    State,
    advance,
    key_read,
    key_unavailable,
    stale_at,
    verdict,
)
from tests.support import WHOAMI, error, ok

STALE_AFTER = 90.0


class Clock:
    def __init__(self) -> None:
        self.mono = 1000.0

    def now(self) -> Instant:
        return Instant(1_800_000_000.0 + self.mono, self.mono)

    def advance(self, seconds: float) -> None:
        self.mono += seconds


def run(
    clock: Clock,
    *answers: Answer,
    state: State | None = None,
    every: float = 30.0,
    min_credits: float | None = None,
) -> State:
    state = state or State()
    for answer in answers:
        clock.advance(every)
        result = classify(answer, clock.now().wall)
        state = advance(state, result, clock.now(), min_credits=min_credits)
    return state


def reason(state: State, clock: Clock, stale_after: float = STALE_AFTER) -> Reason:
    return verdict(state, clock.mono, stale_after=stale_after).reason


TIMEOUT = Answer(failure=Failure.TIMEOUT)


def test_before_the_first_answer_readiness_fails_with_starting() -> None:
    clock = Clock()
    assert reason(State(), clock) is Reason.STARTING
    assert reason(run(clock, TIMEOUT, TIMEOUT), clock) is Reason.STARTING


def test_a_good_answer_is_ready() -> None:
    clock = Clock()
    state = run(clock, ok())
    assert verdict(state, clock.mono, stale_after=STALE_AFTER).ready
    assert state.consecutive_failures == 0
    assert state.last_success_at == clock.now().wall


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (ok(killSwitch=True), Reason.KILL_SWITCH),
        (ok(apiAccessRevoked=True), Reason.ACCESS_REVOKED),
        (error(503, "KILL_SWITCH"), Reason.KILL_SWITCH),
        (error(401, "UNAUTHENTICATED"), Reason.UNAUTHENTICATED),
        (error(402, "BILLING_EXHAUSTED"), Reason.BILLING_EXHAUSTED),
        (error(404), Reason.CLIENT_ERROR),
    ],
)
def test_hard_stops_are_not_ready_at_once_even_when_fresh(answer: Answer, expected: Reason) -> None:
    clock = Clock()
    state = run(clock, ok(), answer, every=1)
    assert reason(state, clock) is expected
    assert state.consecutive_failures == 1


def test_a_hard_stop_stays_through_transient_failures_until_a_definitive_answer() -> None:
    clock = Clock()
    state = run(clock, ok(), ok(killSwitch=True), TIMEOUT, error(500), every=1)
    assert reason(state, clock) is Reason.KILL_SWITCH
    state = run(clock, ok(), state=state)
    assert reason(state, clock) is Reason.OK


@pytest.mark.parametrize(
    "transient",
    [
        TIMEOUT,
        Answer(failure=Failure.NETWORK),
        error(500),
        error(503, "UNAVAILABLE"),
        error(429),
        Answer(status=200, body=b"garbage"),
    ],
)
def test_transients_keep_ready_while_younger_than_stale_after(transient: Answer) -> None:
    clock = Clock()
    state = run(clock, ok(), every=1)
    state = run(clock, transient, transient, state=state, every=44)  # 88 s after the ok
    assert reason(state, clock) is Reason.OK
    assert state.consecutive_failures == 2
    clock.advance(2)  # 90 s: stale, decided when read, without another poll
    assert reason(state, clock) is Reason.STALE
    assert not verdict(state, clock.mono, stale_after=STALE_AFTER).ready


def test_stale_after_zero_fails_on_the_first_transient() -> None:
    clock = Clock()
    state = run(clock, ok(), TIMEOUT, every=1)
    assert reason(state, clock, stale_after=0) is Reason.STALE


def test_a_good_answer_after_staleness_is_ready_again() -> None:
    clock = Clock()
    state = run(clock, ok(), TIMEOUT, TIMEOUT, TIMEOUT, TIMEOUT, every=30)
    assert reason(state, clock) is Reason.STALE
    state = run(clock, ok(), state=state, every=1)
    assert reason(state, clock) is Reason.OK
    assert state.consecutive_failures == 0


def test_min_credits() -> None:
    clock = Clock()
    state = run(clock, ok(creditBalance=99), min_credits=100)
    got = verdict(state, clock.mono, stale_after=STALE_AFTER)
    assert (got.ready, got.reason) == (False, Reason.CREDITS_LOW)
    assert "99" in got.detail
    assert "100" in got.detail
    # credits_low is a good poll: outcome ok, no failure counted.
    assert state.last_outcome == "ok"
    assert state.consecutive_failures == 0
    state = run(clock, ok(creditBalance=100), state=state, min_credits=100)
    assert reason(state, clock) is Reason.OK


def test_credits_low_is_kept_through_fresh_transients_then_goes_stale() -> None:
    clock = Clock()
    state = run(clock, ok(creditBalance=1), TIMEOUT, every=10, min_credits=100)
    assert reason(state, clock) is Reason.CREDITS_LOW
    clock.advance(100)
    assert reason(state, clock) is Reason.STALE


def test_any_well_formed_200_updates_the_whoami_fields() -> None:
    clock = Clock()
    state = run(clock, ok(creditBalance=10), ok(killSwitch=True, creditBalance=7))
    assert state.whoami is not None
    assert state.whoami.credit_balance == 7
    assert state.kill_switch is True


def test_switches_show_the_last_answer_that_stated_them() -> None:
    clock = Clock()
    state = run(clock, error(503, "KILL_SWITCH"))
    assert (state.kill_switch, state.access_revoked) == (True, None)
    state = run(clock, error(401), TIMEOUT, state=state)
    assert state.kill_switch is True  # a 401 or a timeout leaves them as they were
    state = run(clock, ok(), state=state)
    assert (state.kill_switch, state.access_revoked) == (False, False)


def test_a_transient_failure_after_the_key_came_back_says_what_is_wrong_now() -> None:
    clock = Clock()
    state = run(clock, ok())
    state = key_unavailable(state, "key file /k does not exist", clock.now())
    assert verdict(state, clock.mono, stale_after=90).reason is Reason.KEY_UNAVAILABLE
    state = run(clock, TIMEOUT, state=state)
    now = verdict(state, clock.mono, stale_after=90)
    assert now.reason is Reason.STALE
    assert "last outcome timeout" in now.detail
    state = run(clock, ok(), state=state)
    assert verdict(state, clock.mono, stale_after=90).ready


def test_a_transient_failure_after_the_key_came_back_before_any_answer_is_starting() -> None:
    clock = Clock()
    state = key_unavailable(State(), "key file /k is empty", clock.now())
    state = run(clock, error(500), state=state)
    assert verdict(state, clock.mono, stale_after=90).reason is Reason.STARTING


def test_billing_exhausted_keeps_min_tier() -> None:
    clock = Clock()
    state = run(clock, error(402, "BILLING_EXHAUSTED", details={"minTier": "pilot"}))
    assert state.min_tier == "pilot"


def test_a_missing_key_is_not_ready_at_once() -> None:
    clock = Clock()
    state = run(clock, ok())
    state = key_unavailable(state, "key file /k does not exist", clock.now())
    got = verdict(state, clock.mono, stale_after=STALE_AFTER)
    assert (got.ready, got.reason) == (False, Reason.KEY_UNAVAILABLE)
    assert state.last_outcome == "key_unavailable"
    assert state.consecutive_failures == 1


def test_last_outcome_and_request_id_follow_the_latest_attempt() -> None:
    clock = Clock()
    good = Answer(status=200, body=json.dumps(WHOAMI).encode(), headers={"X-Request-Id": "req_A"})
    state = run(clock, good, TIMEOUT)
    assert state.last_outcome == Outcome.TIMEOUT.value
    assert state.last_request_id is None
    assert state.last_success_at is not None
    assert state.last_attempt_at is not None
    assert state.last_attempt_at > state.last_success_at


def test_results_without_answers_are_accepted() -> None:
    state = advance(State(), Result(Outcome.NETWORK_ERROR), Instant(1.0, 1.0), min_credits=None)
    assert state.failing
    assert state.consecutive_failures == 1


def test_every_hard_stop_has_its_reason_and_only_hard_stops_do() -> None:
    hard_stops = {outcome for outcome in Outcome if outcome.hard_stop}
    assert set(HARD_STOP_REASONS) == hard_stops
    for outcome, reason in HARD_STOP_REASONS.items():
        assert reason.value == outcome.value  # the same words on /readyz as in the logs
    assert len(set(HARD_STOP_REASONS.values())) == len(HARD_STOP_REASONS)


def test_a_new_key_drops_the_old_key_s_identity() -> None:
    clock = Clock()
    state = key_read(State(), "aaaa1111")
    state = run(clock, ok(), state=state)
    assert state.whoami is not None
    assert key_read(state, "aaaa1111") is state  # the same key: nothing changes
    rotated = key_read(state, "bbbb2222")
    assert rotated.key_fingerprint == "bbbb2222"
    assert rotated.whoami is None  # nothing of the old key is shown as the new one's
    assert rotated.base == state.base  # the verdict changes on the new key's own answer
    answered = run(clock, error(401, "UNAUTHENTICATED"), state=rotated)
    assert answered.whoami is None
    assert verdict(answered, clock.mono, stale_after=STALE_AFTER).reason is Reason.UNAUTHENTICATED


def test_stale_at_is_when_a_good_verdict_runs_out() -> None:
    clock = Clock()
    state = run(clock, ok())
    assert stale_at(state, stale_after=STALE_AFTER) is None  # not failing
    success = clock.mono
    clock.advance(5)
    state = run(clock, error(500), state=state)
    assert stale_at(state, stale_after=STALE_AFTER) == success + STALE_AFTER
    hard = run(clock, error(401), state=state)
    assert stale_at(hard, stale_after=STALE_AFTER) is None  # a hard stop does not go stale


def detail(state: State, clock: Clock, stale_after: float = STALE_AFTER) -> str:
    return verdict(state, clock.mono, stale_after=stale_after).detail


def test_starting_after_failures_says_what_happened_not_no_answer_yet() -> None:
    clock = Clock()
    assert detail(State(), clock) == "no answer from whoami yet"
    state = run(clock, TIMEOUT, *[error(500, "INTERNAL")] * 4)
    assert reason(state, clock) is Reason.STARTING
    text = detail(state, clock)
    assert text.startswith("no good answer yet: 5 failed polls, last server_error: HTTP 500")
    assert "INTERNAL" in text


def test_a_ready_verdict_held_through_failures_says_so_and_how_long() -> None:
    clock = Clock()
    state = run(clock, ok(), every=1)
    assert detail(state, clock) == ""
    state = run(clock, TIMEOUT, TIMEOUT, TIMEOUT, state=state, every=10)
    held = verdict(state, clock.mono, stale_after=STALE_AFTER)
    assert held.ready
    assert held.reason is Reason.OK
    assert held.detail.startswith("3 failed polls, last timeout")
    assert held.detail.endswith("ready until --stale-after 90s (60s left)")
    assert detail(run(clock, ok(), state=state), clock) == ""  # a good answer: plain ok again


def test_a_hard_stop_followed_by_transients_names_both() -> None:
    clock = Clock()
    state = run(clock, ok(), error(401, "UNAUTHENTICATED"), every=1)
    stopped = detail(state, clock)
    state = run(clock, TIMEOUT, state=state)
    assert reason(state, clock) is Reason.UNAUTHENTICATED
    text = detail(state, clock)
    # The stop still rules, and the detail agrees with lastOutcome (timeout).
    assert text.startswith(stopped)
    assert "; since then 1 failed poll, last timeout" in text


def test_min_tier_is_cleared_by_a_good_answer() -> None:
    clock = Clock()
    state = run(clock, error(402, "BILLING_EXHAUSTED", details={"minTier": "pilot"}))
    assert state.min_tier == "pilot"
    assert run(clock, TIMEOUT, state=state).min_tier == "pilot"  # still what was last said
    assert run(clock, ok(), state=state).min_tier is None
