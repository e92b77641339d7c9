"""The poll loop: when to call whoami, and what to remember and log about each answer.

One attempt at a time. Probes and scrapes read `snapshot()`/`verdict()` from memory; they never
reach the upstream. The poller owns its client session and is the only writer of the State.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

import aiohttp
import structlog

from . import readiness, schedule
from .keys import KeySource, KeyUnavailable, fingerprint
from .outcome import Outcome, Result, classify
from .readiness import Instant, Reason, State, Verdict
from .redact import clean
from .settings import Secret, Settings
from .whoami import client_session, fetch

# A failure that repeats poll after poll is logged when it starts, then at most this often.
REPEAT_LOG_EVERY: Final = 60.0
# How late the loop may be, beyond its own schedule and request timeout, before /livez fails.
LIVENESS_GRACE: Final = 10.0


@dataclass
class _Repeats:
    """Tracks a run of one failure, so that it is logged at its start and then once a minute."""

    kind: str | None = None
    count: int = 0
    logged_at: float = -math.inf

    def note(self, kind: str | None, mono: float) -> int | None:
        """Counts one poll; returns the run's length when this poll should be logged."""
        if kind != self.kind:
            self.kind, self.count = kind, 0
            self.logged_at = -math.inf
        self.count += 1
        if kind is None or mono - self.logged_at < REPEAT_LOG_EVERY:
            return None
        self.logged_at = mono
        return self.count


class Poller:
    def __init__(
        self,
        settings: Settings,
        keys: KeySource,
        *,
        log: structlog.typing.FilteringBoundLogger,
        on_result: Callable[[Outcome, float], None] | None = None,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self._log = log
        self._on_result = on_result
        self._wall = wall
        self._mono = mono
        self._state = State()
        self._session: aiohttp.ClientSession | None = None
        self._repeats = _Repeats()
        self._fallbacks = _Repeats()
        self._key_fingerprint: str | None = None
        self._last_verdict = readiness.STARTING
        self._task: asyncio.Task[None] | None = None
        self._progress_deadline = math.inf

    async def __aenter__(self) -> Poller:
        self._session = client_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()

    # What probes, scrapes and `check` read.

    def snapshot(self) -> State:
        return self._state

    def verdict(self) -> Verdict:
        if self._task is not None and self._task.done():
            # A dead loop must not leave a pod ready on its last answer; /livez fails too.
            return Verdict(False, Reason.STALE, "the poll loop has stopped")
        return readiness.verdict(self._state, self._mono(), stale_after=self.settings.stale_after)

    def alive(self) -> bool:
        """The loop runs and keeps to its schedule (it is not dead or stuck)."""
        if self._task is None or self._task.done():
            return False
        return self._mono() <= self._progress_deadline

    # The loop.

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="whoami-poller")

    async def stop(self) -> None:
        """Cancels the loop, and with it any request in flight."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        try:
            await self._loop()
        except Exception:
            self._log.exception("poll loop crashed")
            raise

    async def _loop(self) -> None:
        while True:
            delay = self.delay_after(await self.poll_once())
            self._progress_deadline = self._mono() + delay + self.settings.timeout + LIVENESS_GRACE
            await asyncio.sleep(delay)

    def delay_after(self, result: Result | None) -> float:
        """When the next attempt is due after `result`; `serve` and `check` share it."""
        return schedule.delay_after(
            result, failures=self._state.consecutive_failures, interval=self.settings.interval
        )

    async def poll_once(self, *, timeout: float | None = None) -> Result | None:
        """One attempt: read the key, call whoami, fold the answer in. None when keyless."""
        assert self._session is not None, "use the poller as an async context manager"
        timeout = self.settings.timeout if timeout is None else timeout
        self._progress_deadline = self._mono() + timeout + LIVENESS_GRACE
        try:
            key = self._keys.read()
        except KeyUnavailable as error:
            self._record_key_unavailable(str(error))
            return None
        self._note_key(key)
        answer = await fetch(
            self._session,
            self.settings.whoami_url,
            key,
            scheme=self.settings.auth_scheme,
            timeout=timeout,
        )
        fallback = self.settings.fallback_whoami_url
        if answer.failure is not None and fallback is not None:
            # No HTTP answer at all (the hub is down or unreachable): ask the real API in this
            # same poll. Any HTTP answer, a 5xx included, stands: during an upstream outage the
            # fleet must not double its traffic.
            self._progress_deadline = self._mono() + timeout + LIVENESS_GRACE
            self._note_fallback(answer.detail, key)
            answer = await fetch(
                self._session, fallback, key, scheme=self.settings.auth_scheme, timeout=timeout
            )
        else:
            self._note_fallback(None, key)
        # Every string in the result has been redacted against this key and escaped.
        result = classify(answer, self._wall(), key)
        self._state = readiness.advance(
            self._state, result, self._now(), min_credits=self.settings.min_credits
        )
        if self._on_result is not None:
            self._on_result(result.outcome, answer.elapsed)
        self._log_result(result, answer.elapsed)
        self._log_verdict()
        return result

    # Bookkeeping and logs.

    def _now(self) -> Instant:
        return Instant(self._wall(), self._mono())

    def _note_key(self, key: Secret) -> None:
        tag = fingerprint(key)
        if self._key_fingerprint is not None and tag != self._key_fingerprint:
            self._log.info("api key changed", keyFingerprint=tag)
        self._key_fingerprint = tag

    def _note_fallback(self, detail: str | None, key: Secret) -> None:
        """Logs a run of polls that needed the fallback when it starts, then once a minute."""
        count = self._fallbacks.note(None if detail is None else "fallback", self._mono())
        if count is not None and detail is not None:
            self._log.warning(
                "api url unreachable, used the fallback", detail=clean(detail, key), repeated=count
            )

    def _record_key_unavailable(self, detail: str) -> None:
        self._state = readiness.key_unavailable(self._state, detail, self._now())
        count = self._repeats.note("key_unavailable", self._mono())
        if count is not None:
            self._log.error("api key unavailable", detail=detail, repeated=count)
        self._log_verdict()

    def _context(self, result: Result) -> dict[str, object]:
        whoami = self._state.whoami
        context: dict[str, object] = {
            "outcome": result.outcome.value,
            "apiKeyId": whoami.api_key_id if whoami else None,
            "organizationId": whoami.organization_id if whoami else None,
            "requestId": result.request_id,
        }
        if result.status is not None:
            context["status"] = result.status
        if result.detail:
            context["detail"] = result.detail
        return context

    def _log_result(self, result: Result, elapsed: float) -> None:
        context = self._context(result)
        context["elapsedMs"] = round(elapsed * 1000, 1)
        if result.outcome is Outcome.OK:
            self._repeats.note(None, self._mono())
            self._log.debug("whoami", **context)
            return
        if result.retry_after is not None:
            context["retryAfter"] = result.retry_after
        if result.min_tier is not None:
            context["minTier"] = result.min_tier
        count = self._repeats.note(result.outcome.value, self._mono())
        if count is not None:
            self._log.warning("whoami failed", repeated=count, **context)
        else:
            self._log.debug("whoami failed", **context)

    def _log_verdict(self) -> None:
        current = self.verdict()
        previous, self._last_verdict = self._last_verdict, current
        if (current.ready, current.reason) == (previous.ready, previous.reason):
            return
        whoami = self._state.whoami
        context = {
            "ready": current.ready,
            "reason": current.reason.value,
            "previousReason": previous.reason.value,
            "apiKeyId": whoami.api_key_id if whoami else None,
            "organizationId": whoami.organization_id if whoami else None,
            "requestId": self._state.last_request_id,
        }
        if current.ready:
            self._log.info("ready", **context)
        else:
            self._log.error("not ready", detail=current.detail, **context)
