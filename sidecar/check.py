"""`check`: one boot check for an init container or CI, ending in an exit code.

Retries transient failures with the same back-off as `serve`, within --deadline; a hard stop
ends it at once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final

import structlog

from .keys import KeySource
from .poller import Poller
from .readiness import Reason
from .settings import Settings

EXIT_READY: Final = 0
EXIT_DEADLINE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_UNAUTHENTICATED: Final = 3
EXIT_BILLING: Final = 4
EXIT_STOPPED: Final = 5
EXIT_CREDITS_LOW: Final = 6

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


async def run_check(
    settings: Settings, keys: KeySource, log: structlog.typing.FilteringBoundLogger
) -> int:
    deadline = time.monotonic() + settings.deadline
    async with Poller(settings, keys, log=log) as poller:
        while True:
            # The last attempts are cut short rather than run past the deadline (one attempt
            # with its full --timeout when --deadline is 0).
            left = deadline - time.monotonic()
            timeout = settings.timeout if left <= 0 else min(settings.timeout, left)
            result = await poller.poll_once(timeout=timeout)
            verdict = poller.verdict()
            code = EXIT_CODES.get(verdict.reason)
            if code is not None:
                break
            assert result is not None  # only a missing key gives no result, and that has a code
            left = deadline - time.monotonic()
            if left <= 0:
                code = EXIT_DEADLINE
                break
            delay = min(poller.delay_after(result), left)
            log.info("check retrying", outcome=result.outcome.value, inSeconds=round(delay, 2))
            await asyncio.sleep(delay)

    state = poller.snapshot()
    whoami = state.whoami
    context = {
        "exitCode": code,
        "reason": verdict.reason.value,
        "detail": verdict.detail,
        "lastOutcome": state.last_outcome,
        "apiKeyId": whoami.api_key_id if whoami else None,
        "organizationId": whoami.organization_id if whoami else None,
        "requestId": state.last_request_id,
    }
    if code == EXIT_READY:
        log.info("check passed", **context)
    else:
        log.error("check failed", deadline=settings.deadline, **context)
    return code
