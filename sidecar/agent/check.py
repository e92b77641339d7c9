"""`check`: one boot check for an init container or CI, ending in an exit code.

Retries transient failures with the same back-off as `serve`, capped by what is left of
--deadline; a hard stop ends it at once. Never runs past --deadline: each attempt's timeout is
cut to what is left. When a back-off step would not fit, the wait is shortened so that one last
attempt still gets MIN_ATTEMPT before the deadline. Only a wait the upstream asked for (a 429's
Retry-After or reset) is never shortened: calling sooner would be calling before it asked, so
when it does not fit, check ends now with code 1 and says so.

With --wait (what an init container runs) every outcome but ok is tried again: hard stops at
--interval, transient failures with the same back-off; with no --deadline given it waits for
ever, so a kill switch at start-up holds the pod in Init without the kubelet restarting it.

It logs one line per retry (with --wait: one per change of reason, and a reminder at most once
a minute) and one last line that names what happened, the URL it called and who the key is.
Time comes from the injected Clock, so tests run the retry loop instantly.
"""

from __future__ import annotations

import math
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import structlog

from ..exits import (
    EXIT_BILLING,
    EXIT_CONFIG,
    EXIT_CREDITS_LOW,
    EXIT_DEADLINE,
    EXIT_READY,
    EXIT_STOPPED,
    EXIT_UNAUTHENTICATED,
)
from ..outcome import Outcome
from ..readiness import Reason
from ..settings import Settings
from .journal import describe, identity
from .keys import KeySource, key_source
from .poller import REAL_CLOCK, Clock, Poller

# No attempt is started with less time than this left before --deadline (or --timeout, when
# shorter): one that cannot get an answer tells nothing, and would make the last line say
# "timeout" where the upstream kept answering 500.
MIN_ATTEMPT: Final = 0.5

# With --wait, a reason that does not change is logged again at most this often (seconds).
WAIT_REMINDER: Final = 60.0

# The one place a verdict becomes an exit code. Reasons absent here are worth another try.
EXIT_CODES: Final = {
    Reason.OK: EXIT_READY,
    Reason.UNAUTHENTICATED: EXIT_UNAUTHENTICATED,
    Reason.CLIENT_ERROR: EXIT_UNAUTHENTICATED,
    Reason.BILLING_EXHAUSTED: EXIT_BILLING,
    Reason.KILL_SWITCH: EXIT_STOPPED,
    Reason.ACCESS_REVOKED: EXIT_STOPPED,
    Reason.CREDITS_LOW: EXIT_CREDITS_LOW,
    Reason.KEY_UNAVAILABLE: EXIT_CONFIG,
}


def shown_url(url: str) -> str:
    """The URL for a log line, without any user:password@ part."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def run_check(
    settings: Settings,
    log: structlog.typing.FilteringBoundLogger,
    *,
    keys: KeySource | None = None,
    clock: Clock = REAL_CLOCK,
) -> int:
    url = shown_url(settings.whoami_url)
    started = clock.mono()
    deadline = started + settings.deadline
    attempts = 0
    gave_up = ""
    # Set once a back-off was shortened to fit the deadline: the attempt after it is the last.
    last_call = False
    # --wait logs each change of reason and a reminder now and then, not every attempt: a kill
    # switch can hold a pod in Init for hours.
    shown_reason: str | None = None
    shown_at = -math.inf
    async with Poller(settings, keys or key_source(settings), log=log, clock=clock) as poller:
        while True:
            # --deadline 0 is one attempt with its full --timeout; otherwise the attempt ends
            # by the deadline.
            left = deadline - clock.mono()
            timeout = settings.timeout if settings.deadline == 0 else min(settings.timeout, left)
            ends_by = None if settings.deadline == 0 else deadline
            result = await poller.poll_once(timeout=timeout, ends_by=ends_by)
            attempts += 1
            code = EXIT_CODES.get(poller.verdict().reason)
            if code == EXIT_READY or (code is not None and not settings.wait):
                break
            if code is not None:
                # Waiting out a hard stop (or a key not there yet): asked again every
                # --interval, as serve would.
                delay, reason = settings.interval, poller.verdict().reason.value
            else:
                assert result is not None  # only a missing key gives no result, and it has a code
                delay, reason = poller.delay_after(result), result.outcome.value
            left = deadline - clock.mono()
            least = min(MIN_ATTEMPT, settings.timeout)
            if delay + least > left:
                asked = (
                    result is not None
                    and result.outcome is Outcome.RATE_LIMITED
                    and result.retry_after is not None
                )
                if asked and left > 0:
                    code = EXIT_DEADLINE
                    gave_up = (
                        f"the upstream asked to wait {delay:g}s before another call, and "
                        f"--deadline {settings.deadline:g}s leaves {left:.1f}s"
                    )
                    break
                if last_call or left < least:
                    # The deadline is (all but) reached: no time for an attempt that could answer.
                    # A hard stop keeps its own code: the pod's status says what is wrong.
                    code = EXIT_DEADLINE if code is None else code
                    gave_up = (
                        f"no good answer within --deadline {settings.deadline:g}s "
                        f"({attempts} attempt{'s' if attempts > 1 else ''}"
                        + (
                            f", the last answered {left:.1f}s before the deadline)"
                            if left > 0
                            else ")"
                        )
                    )
                    break
                # Our own back-off is only a courtesy: shorten it to leave the last attempt
                # MIN_ATTEMPT before the deadline, rather than giving up with time to spare.
                delay, last_call = max(0.0, left - least), True
            context: dict[str, object] = {
                "url": url,
                "attempt": attempts,
                "inSeconds": round(delay, 2),
            }
            if result is not None:
                context.update(describe(result))
            elif poller.verdict().detail:
                context["detail"] = poller.verdict().detail
            context.update(
                identity(poller.snapshot(), None if result is None else result.request_id)
            )
            now = clock.mono()
            if not settings.wait:
                log.info("check retrying", **context)
            elif reason != shown_reason or now - shown_at >= WAIT_REMINDER:
                waited = round(now - started, 2)
                event = "check waiting" if reason != shown_reason else "check still waiting"
                log.warning(event, reason=reason, waitedSeconds=waited, **context)
                shown_reason, shown_at = reason, now
            await clock.sleep(delay)

    state, verdict = poller.snapshot(), poller.verdict()
    context = {
        "exitCode": code,
        "url": url,
        "attempts": attempts,
        "elapsedSeconds": round(clock.mono() - started, 2),
    }
    if code == EXIT_DEADLINE:
        # The verdict is still "starting" (or a stale "ok"); what matters is what the upstream
        # said last and why check stopped asking.
        context["reason"] = state.last_outcome
        context["detail"] = f"{gave_up}; last answer: {state.last_detail or state.last_outcome}"
    else:
        context["reason"] = verdict.reason.value
        detail = "; ".join(part for part in (gave_up, verdict.detail) if part)
        if detail:
            context["detail"] = detail
    context.update(identity(state, state.last_request_id))
    if code == EXIT_READY:
        log.info("check passed", **context)
    else:
        log.error("check failed", **context)
    return code
