"""When to call whoami next: back-off, the waits the upstream asks for, and their bounds. Pure.

Every wait the upstream asks for (`Retry-After`, `X-RateLimit-Reset`) is parsed strictly and then
clamped: never sooner than the transient back-off would retry, so that `Retry-After: 0` or a date
in the past cannot make a hot loop, and never later than `CEILING_INTERVALS` intervals, so that a
year-9999 date cannot stop polling for good and a cleared state is seen. The headers themselves
are parsed, strictly, by `headers` (they are part of reading the answer). The hub reuses
`bounded` with its `--ttl` in place of `--interval`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .outcome import Outcome, Result

FIRST_BACKOFF: Final = 1.0
# No wait the upstream asks for keeps the next poll further away than this many intervals.
CEILING_INTERVALS: Final = 10
# Adaptive polling: below this share of X-RateLimit-Limit left, wait for the reset.
LOW_QUOTA: Final = 0.1


def bounded(requested: float, floor: float, ceiling: float) -> float:
    """`requested` clamped to [floor, ceiling]; NaN counts as the floor."""
    if math.isnan(requested):
        return floor
    return min(max(requested, floor), ceiling)


def backoff_step(failures: int, interval: float) -> float:
    """The back-off step after `failures` transient failures: 1 s, doubling, capped at interval."""
    return min(interval, FIRST_BACKOFF * 2.0 ** min(max(failures, 1) - 1, 30))


def backoff(failures: int, interval: float, rand: Callable[[], float] = random.random) -> float:
    """ "Equal jitter": at least half the step, so retries spread out but still back off."""
    step = backoff_step(failures, interval)
    return step / 2 + rand() * step / 2


def quota_low(limit: float | None, remaining: float | None) -> bool:
    """X-RateLimit-Remaining under 10% of X-RateLimit-Limit."""
    return (
        limit is not None and remaining is not None and limit > 0 and remaining < LOW_QUOTA * limit
    )


def next_delay(
    outcome: Outcome | None,
    *,
    failures: int,
    interval: float,
    retry_after: float | None,
    reset: float | None = None,
    low_quota: bool = False,
    unreadable: bool = False,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds until the next attempt; always within [back-off floor, 10 intervals].

    Transient failures retry sooner, with exponential back-off and jitter, never past
    --interval. A 429 waits as long as the upstream asked (`retry_after`: Retry-After, else the
    reset), within the bounds; --interval when it asked nothing. Everything else, hard stops
    included, keeps the normal interval: no retry loop against a kill switch, yet a cleared
    switch is seen on the next poll. On any answer that leaves under 10% of the quota, the next
    poll also waits for the reset, plus jitter up to --interval, so that a fleet does not return
    all at once.
    """
    ceiling = CEILING_INTERVALS * interval
    if outcome is Outcome.RATE_LIMITED:
        floor = backoff(failures, interval, rand)
        if retry_after is None:
            # Nothing asked for: --interval; asked for in a form that does not parse: back-off.
            return floor if unreadable else max(floor, interval)
        return bounded(retry_after, floor, ceiling)
    if outcome is not None and outcome.transient:
        delay = backoff(failures, interval, rand)
    else:
        delay = interval
    if low_quota and reset is not None:
        delay = bounded(max(delay, reset + rand() * interval), delay, ceiling)
    return delay


def delay_after(
    result: Result | None,
    *,
    failures: int,
    interval: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """`next_delay` for one classified answer (None: no call was made, the key is missing)."""
    if result is None:
        return interval
    return next_delay(
        result.outcome,
        failures=failures,
        interval=interval,
        retry_after=result.retry_after,
        reset=result.rate_limit_reset,
        low_quota=quota_low(result.rate_limit_limit, result.rate_limit_remaining),
        unreadable=result.wait_unreadable,
        rand=rand,
    )


# Fallback mode spreads a fleet's fallback polls by up to this share of --fallback-interval...
FALLBACK_JITTER: Final = 0.1
# ...and by at most this share of --timeout, which the next hub try gives up (see `fallback`).
FALLBACK_JITTER_TIMEOUT: Final = 0.5


@dataclass(frozen=True)
class FallbackStep:
    """The next attempt while the hub gets no answer: when, and how long it may wait for the hub."""

    delay: float
    hub_timeout: float


def fallback(
    delay: float,
    *,
    fallback_interval: float,
    timeout: float,
    rand: Callable[[], float] = random.random,
) -> FallbackStep:
    """The next attempt while the hub gives no HTTP answer: its poll (the hub tried first, then
    the fallback in the same poll) starts no sooner than --fallback-interval after this one ended,
    so N sidecars send Layers at most N x 60 / --fallback-interval calls a minute.

    The jitter only lengthens the wait (never more often than the interval), and the next hub
    try gives up as much of its --timeout as the jitter added: one wait of at most
    --fallback-interval + jitter, a hub try of at most --timeout - jitter, a fallback call of at
    most --timeout, so a kill switch is still seen within --fallback-interval + 2 x --timeout.
    `delay` is what the answer itself asked for (a 429's Retry-After): never shortened.
    """
    jitter = rand() * min(FALLBACK_JITTER * fallback_interval, FALLBACK_JITTER_TIMEOUT * timeout)
    return FallbackStep(max(delay, fallback_interval + jitter), timeout - jitter)
