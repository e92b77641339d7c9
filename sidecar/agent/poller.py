"""The poll loop: when to call whoami, and what the State becomes after each answer.

One attempt at a time. Probes and scrapes read `snapshot()`/`verdict()` from memory; they never
reach the upstream. The poller owns its client session and is the only writer of the State. It
schedules and fetches, nothing more: after each step it hands an `Event` (result, state, verdict)
to its observers, which own the rest: the journal (logs), the metrics, the ready-file.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

import aiohttp
import structlog

from .. import readiness, schedule
from ..outcome import Result, classify
from ..readiness import Event, Instant, Reason, State, Verdict
from ..redact import clean
from ..settings import Settings
from ..whoami import client_session, fetch
from .keys import KeySource, KeyUnavailable, fingerprint

# How late the loop may be, beyond its own schedule and request timeout, before /livez fails.
LIVENESS_GRACE: Final = 10.0
# Woken this much after the moment the verdict turns stale, so that it has.
_STALE_MARGIN: Final = 0.01

Observer = Callable[[Event], None]


@dataclass(frozen=True)
class Clock:
    """Time as the poller and `check` see it; tests pass a fake one to run schedules instantly."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


REAL_CLOCK: Final = Clock()


class Poller:
    def __init__(
        self,
        settings: Settings,
        keys: KeySource,
        *,
        log: structlog.typing.FilteringBoundLogger,
        observers: Sequence[Observer] = (),
        clock: Clock = REAL_CLOCK,
    ) -> None:
        self.settings = settings
        self._keys = keys
        self._log = log
        self._observers = tuple(observers)
        self._clock = clock
        self._state = State()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._crashed = False
        self._progress_deadline = math.inf
        # Fallback mode: the last call to --api-url got no HTTP answer and the poll went to
        # --fallback-api-url; the next hub try may wait at most this long (None: a hub answers).
        self._hub_timeout: float | None = None

    async def __aenter__(self) -> Poller:
        self._session = client_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._session is not None:
            await self._session.close()

    # What probes, scrapes and `check` read.

    def snapshot(self) -> State:
        return self._state

    def verdict(self) -> Verdict:
        if self._crashed or (self._task is not None and self._task.done()):
            # A dead loop must not leave a pod ready on its last answer; /livez fails too.
            return Verdict(False, Reason.STALE, "the poll loop has stopped")
        return readiness.verdict(
            self._state, self._clock.mono(), stale_after=self.settings.stale_after
        )

    def alive(self) -> bool:
        """The loop runs and keeps to its schedule (it is not dead or stuck)."""
        if self._task is None or self._task.done():
            return False
        return self._clock.mono() <= self._progress_deadline

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
            self._crashed = True
            self._publish(Event(self._state, self.verdict()))
            raise

    async def _loop(self) -> None:
        while True:
            result = await self.poll_once(hub_timeout=self._hub_timeout)
            delay = self.delay_after(result)
            if self._hub_timeout is not None:
                # The hub gave no answer: Layers must not get the hub's cadence (see `fallback`).
                step = schedule.fallback(
                    delay,
                    fallback_interval=self.settings.fallback_interval,
                    timeout=self.settings.timeout,
                )
                delay, self._hub_timeout = step.delay, step.hub_timeout
            self._progress_deadline = (
                self._clock.mono() + delay + self.settings.timeout + LIVENESS_GRACE
            )
            await self._wait(delay)

    async def _wait(self, delay: float) -> None:
        """Sleeps until the next attempt. When the verdict turns stale on the way, wakes at that
        moment to tell the observers, so the ready-file goes when readiness does, not at the
        next poll (which a long Retry-After can put minutes away)."""
        until = self._clock.mono() + delay
        stale = readiness.stale_at(self._state, stale_after=self.settings.stale_after)
        if stale is not None and self._clock.mono() < stale < until:
            await self._clock.sleep(stale + _STALE_MARGIN - self._clock.mono())
            self._publish(Event(self._state, self.verdict()))
        await self._clock.sleep(max(0.0, until - self._clock.mono()))

    def delay_after(self, result: Result | None) -> float:
        """When the next attempt is due after `result`; `serve` and `check` share it."""
        return schedule.delay_after(
            result, failures=self._state.consecutive_failures, interval=self.settings.interval
        )

    async def poll_once(
        self,
        *,
        timeout: float | None = None,
        ends_by: float | None = None,
        hub_timeout: float | None = None,
    ) -> Result | None:
        """One attempt: read the key, call whoami, fold the answer in. None when keyless.

        `ends_by` (monotonic) bounds the whole attempt, the fallback's call included: `check`
        never runs past --deadline. `hub_timeout` shortens the wait for --api-url alone (in
        fallback mode, by the jitter the wait before this poll added).
        """
        assert self._session is not None, "use the poller as an async context manager"
        timeout = self.settings.timeout if timeout is None else timeout
        self._progress_deadline = self._clock.mono() + timeout + LIVENESS_GRACE
        try:
            key = self._keys.read()
        except KeyUnavailable as error:
            self._state = readiness.key_unavailable(self._state, str(error), self._now())
            self._publish(Event(self._state, self.verdict(), key_error=str(error)))
            return None
        self._state = readiness.key_read(self._state, fingerprint(key))
        session, scheme = self._session, self.settings.auth_scheme
        first = timeout if hub_timeout is None else min(timeout, hub_timeout)
        answer = await fetch(session, self.settings.whoami_url, key, scheme=scheme, timeout=first)
        fallback: str | None = None
        left = timeout if ends_by is None else min(timeout, ends_by - self._clock.mono())
        if (
            answer.failure is not None
            and self.settings.fallback_whoami_url is not None
            and left > 0
        ):
            # No HTTP answer at all (the hub is down or unreachable): ask the real API in this
            # same poll. Any HTTP answer, a 5xx included, stands: during an upstream outage the
            # fleet must not double its traffic.
            fallback = clean(answer.detail, key)
            self._progress_deadline = self._clock.mono() + left + LIVENESS_GRACE
            url = self.settings.fallback_whoami_url
            answer = await fetch(session, url, key, scheme=scheme, timeout=left)
        # Fallback mode lasts until the first HTTP answer from --api-url; `_loop` paces it.
        self._hub_timeout = None if fallback is None else self.settings.timeout
        # Every string in the result has been redacted against this key and escaped.
        result = classify(answer, self._clock.wall(), key)
        self._state = readiness.advance(
            self._state, result, self._now(), min_credits=self.settings.min_credits
        )
        self._publish(
            Event(
                self._state,
                self.verdict(),
                result=result,
                elapsed=answer.elapsed,
                fallback=fallback,
            )
        )
        return result

    def _now(self) -> Instant:
        return Instant(self._clock.wall(), self._clock.mono())

    def _publish(self, event: Event) -> None:
        for observer in self._observers:
            observer(event)
