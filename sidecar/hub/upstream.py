"""`layers-sidecar hub`: one coalescing, short-TTL cache of whoami answers in front of Layers.

The edge around `cache.py`: given a caller's key, it asks the upstream at most once per key per
TTL (callers that arrive during that call wait for it) and keeps the answer as it will be passed
on; `server.py` serves it over HTTP. Keys live only as HMAC tags, except while their own
upstream call is in flight; nothing here logs, answers or counts a key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Final

import aiohttp
import structlog

from .. import __version__
from ..outcome import Answer, Failure, Outcome, Result, classify
from ..runtime.server import client_connections
from ..secret import Secret
from ..settings import AuthScheme, Settings
from ..throttle import REPEAT_LOG_EVERY, Throttle
from ..whoami import client_session, fetch
from .cache import (
    UNKNOWN_KEY_RESERVE,
    Entries,
    Entry,
    KeyFacts,
    Stored,
    Tagger,
    TokenBucket,
    facts_after,
    ttl_for,
)

Log = structlog.typing.FilteringBoundLogger

# The upstream's body is passed on unchanged, so it is read whole, up to the most a sidecar
# reads when it looks for a stated switch; past that the hub answers 502 instead, unless the
# part it read states a switch (see `stored`).
MAX_PASSED_BODY: Final = 1024 * 1024
# A key nobody asked for in this long is forgotten, and its per-key gauges with it.
FORGET_AFTER: Final = 600.0
# Connections to the upstream at once. The rate budget already bounds new calls; this bounds
# what a slow upstream can pile up.
UPSTREAM_CONNECTIONS: Final = 256
PASSED_HEADERS: Final = frozenset(
    {"content-type", "x-request-id", "x-layers-api-version", "retry-after"}
)


def passed(name: str) -> bool:
    """The upstream headers a caller receives: the ones a sidecar reads, and nothing else."""
    lower = name.lower()
    return lower in PASSED_HEADERS or lower.startswith("x-ratelimit-")


def request_id() -> str:
    return "hub_" + secrets.token_hex(10)


def hub_error(status: int, code: str, message: str, **headers: str) -> Stored:
    """One of the hub's own answers, in the upstream's error shape."""
    rid = request_id()
    body = json.dumps({"error": {"code": code, "message": message, "requestId": rid}}).encode()
    return Stored(
        status=status,
        body=body,
        headers=(("Content-Type", "application/json"), ("X-Request-Id", rid), *headers.items()),
        hub_error=True,
    )


# What a stated switch makes the hub pass on even from an answer it could not read whole.
_STATED: Final = frozenset({Outcome.KILL_SWITCH, Outcome.ACCESS_REVOKED})


def stored(answer: Answer, result: Result) -> Stored:
    """What callers receive for one upstream attempt.

    A switch the upstream stated wins here as it does going direct: an answer over 1 MiB, or cut
    short by a stall or a reset, passes on with its status and the part of the body that was read
    (at most MAX_PASSED_BODY), so the sidecar finds the same switch and stops, not a 502 or 504
    it would ride out as transient.
    """
    if result.outcome in _STATED and answer.status is not None:
        return Stored(answer.status, answer.body[:MAX_PASSED_BODY], tuple(answer.headers.items()))
    if answer.failure is Failure.TIMEOUT:
        return hub_error(504, "UPSTREAM_TIMEOUT", "The Layers API did not answer in time.")
    if answer.failure is not None or answer.status is None:
        return hub_error(502, "UPSTREAM_UNAVAILABLE", "The Layers API cannot be reached.")
    if answer.too_large:
        return hub_error(502, "UPSTREAM_UNAVAILABLE", "The Layers API answer is over 1 MiB.")
    return Stored(answer.status, answer.body, tuple(answer.headers.items()))


class Busy(Exception):
    """The upstream budget is spent; `retry_after` is when the next call would be allowed."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"upstream budget spent for {retry_after:.2f}s")
        self.retry_after = retry_after


UpstreamObserver = Callable[[Outcome, float], None]


def _ignore(outcome: Outcome, seconds: float) -> None:
    pass


class Hub:
    """The cache and its upstream calls. One per process; the only writer of its entries.

    `on_upstream` receives each upstream call's outcome and time (the metrics count them)."""

    def __init__(
        self,
        settings: Settings,
        *,
        log: Log,
        on_upstream: UpstreamObserver = _ignore,
        mono: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._log = log
        self._mono = mono
        self._wall = wall
        self._tagger = Tagger()
        self._entries = Entries(settings.max_keys)
        self._flights: dict[bytes, asyncio.Task[Entry]] = {}
        self._bucket = TokenBucket(settings.max_upstream_rate, now=mono())
        self._session: aiohttp.ClientSession | None = None
        self._on_upstream = on_upstream
        self._trouble = Throttle(REPEAT_LOG_EVERY, mono)

    async def __aenter__(self) -> Hub:
        # No cookie jar (client_session's rule) matters most here: one key's cookies must never
        # ride along with another key's call.
        self._session = client_session(
            # Within the share of the open-files limit the server leaves free for it.
            connections=client_connections(UPSTREAM_CONNECTIONS),
            agent=f"layers-readiness-hub/{__version__}",
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        flights = list(self._flights.values())
        for flight in flights:
            flight.cancel()
        await asyncio.gather(*flights, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def now(self) -> float:
        return self._mono()

    # What the metrics read.

    def key_count(self) -> int:
        self._entries.forget_idle(self._mono(), FORGET_AFTER)
        return len(self._entries)

    def key_facts(self) -> Iterator[KeyFacts]:
        for entry in self._entries:
            if entry.facts is not None:
                yield entry.facts

    # Answers.

    async def answer(self, key: str, scheme: AuthScheme) -> tuple[Entry, str]:
        """The entry for exactly this key, and how it came: hit, miss or coalesced.

        Raises Busy when a new upstream call would pass --max-upstream-rate.
        """
        now = self._mono()
        tag = self._tagger.tag(key)
        entry = self._entries.get(tag, now)
        if entry is not None and entry.fresh(now):
            return entry, "hit"
        flight = self._flights.get(tag)
        if flight is not None:
            # Same tag, so the same key: only its holder ever waits on this call.
            return await asyncio.shield(flight), "coalesced"
        known = entry is not None and entry.known_good
        wait = self._bucket.take(now, reserve=0.0 if known else UNKNOWN_KEY_RESERVE)
        if wait > 0:
            self._warn("upstream budget spent", "busy", retryAfter=round(wait, 2))
            raise Busy(wait)
        flight = asyncio.create_task(self._call(tag, Secret(key), scheme, entry))
        self._flights[tag] = flight
        flight.add_done_callback(lambda done: self._landed(tag, done))
        return await asyncio.shield(flight), "miss"

    def _landed(self, tag: bytes, flight: asyncio.Task[Entry]) -> None:
        if self._flights.get(tag) is flight:
            del self._flights[tag]

    async def _call(
        self, tag: bytes, key: Secret, scheme: AuthScheme, previous: Entry | None
    ) -> Entry:
        assert self._session is not None, "use the hub as an async context manager"
        answer = await fetch(
            self._session,
            self.settings.whoami_url,
            key,
            scheme=scheme,
            timeout=self.settings.timeout,
            max_body=MAX_PASSED_BODY,
            keep=passed,
        )
        # Every string in the result is redacted against this key: it only reaches the logs.
        result = classify(answer, self._wall(), key)
        self._on_upstream(result.outcome, answer.elapsed)
        now = self._mono()
        facts = facts_after(previous.facts if previous else None, result)
        entry = Entry(
            tag=tag,
            answer=stored(answer, result),
            fetched_at=now,
            expires_at=now + ttl_for(result, ttl=self.settings.ttl),
            facts=facts,
            known_good=result.whoami is not None
            or (previous is not None and previous.known_good and result.outcome.transient),
        )
        self._entries.put(entry, now)
        self._entries.forget_idle(now, FORGET_AFTER)
        context: dict[str, object] = {
            "outcome": result.outcome.value,
            "status": result.status,
            "apiKeyId": facts.api_key_id if facts else None,
            "requestId": result.request_id,
            "elapsedMs": round(answer.elapsed * 1000, 1),
        }
        if result.outcome is Outcome.OK or result.outcome.hard_stop:
            self._log.debug("upstream", **context)
        else:
            # The result's detail, not the answer's: redacted against this key and escaped.
            self._warn("upstream failed", result.outcome.value, detail=result.detail, **context)
        return entry

    def _warn(self, event: str, kind: str, **context: object) -> None:
        """A warning when a kind of trouble starts, then at most once a minute with a count."""
        tally = self._trouble.note(kind)
        if tally is not None:
            self._log.warning(event, repeated=tally.held + 1, **context)
