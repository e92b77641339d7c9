"""Results over time → a readiness Verdict. Pure: the clock is always passed in.

`advance` folds one poll into the State; `verdict` reads the State at a moment. Staleness is
decided when read, not when polled, so a long Retry-After cannot keep a pod ready past
--stale-after.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from .bodies import Whoami
from .outcome import Outcome, Result


class Reason(StrEnum):
    OK = "ok"
    STARTING = "starting"
    STALE = "stale"
    KILL_SWITCH = "kill_switch"
    ACCESS_REVOKED = "access_revoked"
    UNAUTHENTICATED = "unauthenticated"
    BILLING_EXHAUSTED = "billing_exhausted"
    CLIENT_ERROR = "client_error"
    CREDITS_LOW = "credits_low"
    # Not an upstream outcome: the key file is missing, empty or unreadable, so no call was made.
    KEY_UNAVAILABLE = "key_unavailable"


# Verdicts that a transient failure may carry on (while fresh): they came from a good answer.
_FROM_GOOD_ANSWER = frozenset({Reason.OK, Reason.CREDITS_LOW})

# The reason each hard-stop outcome gives. Written out rather than derived from the names, so
# that renaming either side is a visible change (tests check that every hard stop is here).
HARD_STOP_REASONS: Final = {
    Outcome.KILL_SWITCH: Reason.KILL_SWITCH,
    Outcome.ACCESS_REVOKED: Reason.ACCESS_REVOKED,
    Outcome.UNAUTHENTICATED: Reason.UNAUTHENTICATED,
    Outcome.BILLING_EXHAUSTED: Reason.BILLING_EXHAUSTED,
    Outcome.CLIENT_ERROR: Reason.CLIENT_ERROR,
}


@dataclass(frozen=True)
class Verdict:
    ready: bool
    reason: Reason
    detail: str = ""


STARTING = Verdict(False, Reason.STARTING, "no answer from whoami yet")


@dataclass(frozen=True)
class Instant:
    """One moment on both clocks: wall time to show, monotonic time to measure ages."""

    wall: float
    mono: float


@dataclass(frozen=True)
class State:
    # The verdict of the last definitive answer (good or hard stop); transients leave it be.
    base: Verdict = STARTING
    # True while the latest attempts failed transiently.
    failing: bool = False
    whoami: Whoami | None = None
    kill_switch: bool | None = None
    access_revoked: bool | None = None
    min_tier: str | None = None
    last_outcome: str | None = None
    last_detail: str = ""
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_success_mono: float | None = None
    last_request_id: str | None = None
    consecutive_failures: int = 0
    # Transient failures since the last definitive answer (good, hard stop or missing key): what
    # a verdict carried through them, or "starting", says happened meanwhile.
    failed_polls: int = 0
    rate_limit_limit: float | None = None
    rate_limit_remaining: float | None = None
    # Which key the state is about (keys.fingerprint); whoami describes this key or is None.
    key_fingerprint: str | None = None


def _good_verdict(whoami: Whoami, min_credits: float | None) -> Verdict:
    if min_credits is not None and whoami.credit_balance < min_credits:
        return Verdict(
            False,
            Reason.CREDITS_LOW,
            f"creditBalance {whoami.credit_balance:g} is below --min-credits {min_credits:g}",
        )
    return Verdict(True, Reason.OK)


def advance(state: State, result: Result, at: Instant, *, min_credits: float | None) -> State:
    """Folds one whoami result into the state."""
    outcome = result.outcome
    changes: dict[str, object] = {
        "last_outcome": outcome.value,
        "last_detail": result.detail,
        "last_attempt_at": at.wall,
        "last_request_id": result.request_id,
        "consecutive_failures": 0 if outcome is Outcome.OK else state.consecutive_failures + 1,
        "failing": outcome.transient,
        "failed_polls": state.failed_polls + 1 if outcome.transient else 0,
    }
    if result.whoami is not None:
        # Any well-formed 200 updates who the key is, switches on or off.
        changes["whoami"] = result.whoami
    if result.kill_switch is not None:
        changes["kill_switch"] = result.kill_switch
    if result.access_revoked is not None:
        changes["access_revoked"] = result.access_revoked
    if result.rate_limit_limit is not None:
        changes["rate_limit_limit"] = result.rate_limit_limit
    if result.rate_limit_remaining is not None:
        changes["rate_limit_remaining"] = result.rate_limit_remaining

    if outcome is Outcome.OK:
        assert result.whoami is not None
        changes["base"] = _good_verdict(result.whoami, min_credits)
        changes["last_success_at"] = at.wall
        changes["last_success_mono"] = at.mono
        # The key is in good standing: a tier a past 402 asked for no longer applies.
        changes["min_tier"] = None
    elif outcome.hard_stop:
        changes["base"] = Verdict(False, HARD_STOP_REASONS[outcome], result.detail)
        if outcome is Outcome.BILLING_EXHAUSTED:
            changes["min_tier"] = result.min_tier
    elif state.base.reason is Reason.KEY_UNAVAILABLE:
        # A call was made, so the key is back: what is wrong now is the upstream's answer.
        changes["base"] = Verdict(
            False,
            Reason.STALE if state.last_success_mono is not None else Reason.STARTING,
            f"no good answer since the key came back; last outcome {outcome.value}"
            + (f": {result.detail}" if result.detail else ""),
        )
    return replace(state, **changes)  # type: ignore[arg-type]


def key_read(state: State, fingerprint: str) -> State:
    """The key about to be used. Identity belongs to a key: when it changes, the old key's
    whoami (apiKeyId, organization, balance, tier) is dropped until the new key's first answer,
    so that nothing shown about the new key is the old one's. The verdict and the switches stay:
    they change on the new key's first definitive answer, as for any poll."""
    if fingerprint == state.key_fingerprint:
        return state
    if state.key_fingerprint is None:
        return replace(state, key_fingerprint=fingerprint)
    return replace(state, key_fingerprint=fingerprint, whoami=None, min_tier=None)


def key_unavailable(state: State, detail: str, at: Instant) -> State:
    """No call could be made: the key is missing. Not ready at once, like a hard stop."""
    return replace(
        state,
        base=Verdict(False, Reason.KEY_UNAVAILABLE, detail),
        failing=False,
        last_outcome=Reason.KEY_UNAVAILABLE.value,
        last_detail=detail,
        last_attempt_at=at.wall,
        last_request_id=None,
        consecutive_failures=state.consecutive_failures + 1,
        failed_polls=0,
    )


def stale_at(state: State, *, stale_after: float) -> float | None:
    """The monotonic time at which the current verdict turns `stale` if nothing changes; None
    when it cannot (not failing, or not a verdict that a transient failure carries on)."""
    if not state.failing or state.base.reason not in _FROM_GOOD_ANSWER:
        return None
    assert state.last_success_mono is not None
    return state.last_success_mono + stale_after


def _since(state: State) -> str:
    """What the transient failures since the last definitive answer were, in a few words."""
    count = state.failed_polls
    text = f"{count} failed poll{'' if count == 1 else 's'}, last {state.last_outcome}"
    # Without the upstream message's full stop, so that "…error.; since" does not happen.
    return f"{text}: {state.last_detail.rstrip('. ')}" if state.last_detail else text


def verdict(state: State, mono_now: float, *, stale_after: float) -> Verdict:
    """The verdict at `mono_now`: the base one, unless transient failures have made it stale.

    While transient failures go on, the detail says so: a verdict carried through them is not
    the same news as one just confirmed, and "starting" after five 500s is not "no answer yet".
    """
    base = state.base
    if not state.failing or state.failed_polls == 0:
        return base
    if base.reason not in _FROM_GOOD_ANSWER:
        if base == STARTING:
            return Verdict(False, Reason.STARTING, f"no good answer yet: {_since(state)}")
        if base.reason in HARD_STOP_REASONS.values():
            # Still stopped (only a definitive answer clears it), and what came after.
            stop = base.detail.rstrip(". ")
            return replace(base, detail=f"{stop}; since then {_since(state)}".lstrip("; "))
        return base
    assert state.last_success_mono is not None
    age = mono_now - state.last_success_mono
    if age < stale_after:
        held = "ready" if base.ready else "held"
        note = (
            f"{_since(state)}; {held} until --stale-after {stale_after:g}s "
            f"({stale_after - age:.0f}s left)"
        )
        return replace(base, detail=f"{base.detail}; {note}" if base.detail else note)
    return Verdict(
        False,
        Reason.STALE,
        f"no good answer for {age:.0f}s (--stale-after {stale_after:g}s); "
        f"last outcome {state.last_outcome}",
    )


@dataclass(frozen=True)
class Event:
    """One step of the poll loop, as the roles that follow it receive it: the journal (logs),
    the metrics and the ready-file each get these values and never the poller itself."""

    state: State
    verdict: Verdict
    # The classified whoami answer, when a call was made, and how long the call took.
    result: Result | None = None
    elapsed: float = 0.0
    # Why no call could be made (the key file is missing, empty or unreadable).
    key_error: str | None = None
    # Why --api-url gave no answer, when --fallback-api-url answered this poll instead.
    fallback: str | None = None
