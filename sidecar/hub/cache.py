"""The hub's pure core: what one cached answer is, how long it serves, and what bounds the cache.

No I/O and no clock of its own: every function takes `now` (monotonic seconds), so the rules are
tested without a network or a wait. `upstream.py` is the edge that calls the upstream and serves.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Final

from ..outcome import Outcome, Result
from ..schedule import CEILING_INTERVALS, bounded

# A failure to reach the upstream (refused, reset, DNS, TLS, timeout) serves this long: long
# enough that a fleet asking every second makes one attempt a second, short enough that the hub
# notices the upstream's return almost at once.
FAILURE_TTL: Final = 1.0
# Keys whose last answer was not a 200 (random or revoked keys, typos) may spend the upstream
# budget only while this share of it is left, so a flood of bad keys cannot starve the refresh
# of the keys the fleet really uses.
UNKNOWN_KEY_RESERVE: Final = 0.5
# Bodies are passed on whole (up to 1 MiB each), so --max-keys alone would allow gigabytes; the
# cache also stays under this many bytes of answers, least recently used evicted first. A whoami
# answer is about 400 bytes: 10,000 keys of them are 4 MiB.
MAX_CACHE_BYTES: Final = 64 * 1024 * 1024
# What an entry costs beyond its body and headers (the objects around them), for that count.
ENTRY_OVERHEAD: Final = 512


@dataclass(frozen=True)
class Stored:
    """An answer as the hub passes it on: the upstream's, or one of the hub's own errors."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    hub_error: bool = False


@dataclass(frozen=True)
class KeyFacts:
    """What the per-key gauges show: the last values a whoami answer stated for one key."""

    api_key_id: str
    organization_id: str
    credit_balance: float
    kill_switch: bool
    access_revoked: bool


def facts_after(previous: KeyFacts | None, result: Result) -> KeyFacts | None:
    """A well-formed 200 says everything; a malformed or cut-short 200, or a 503 KILL_SWITCH,
    only the switches it states; the rest nothing."""
    whoami = result.whoami
    if whoami is not None:
        return KeyFacts(
            api_key_id=whoami.api_key_id,
            organization_id=whoami.organization_id,
            credit_balance=whoami.credit_balance,
            kill_switch=whoami.kill_switch,
            access_revoked=whoami.api_access_revoked,
        )
    if previous is None:
        return None
    if result.kill_switch is not None:
        previous = replace(previous, kill_switch=result.kill_switch)
    if result.access_revoked is not None:
        previous = replace(previous, access_revoked=result.access_revoked)
    return previous


def ttl_for(result: Result, *, ttl: float) -> float:
    """How long an upstream outcome serves every caller with the same key."""
    if result.outcome in (Outcome.TIMEOUT, Outcome.NETWORK_ERROR):
        return FAILURE_TTL
    if result.outcome is Outcome.RATE_LIMITED and result.retry_after is not None:
        # As long as the upstream asks, but within the sidecar's own bounds with --ttl for
        # --interval: a wild Retry-After must not freeze the fleet's view of a key for hours.
        return bounded(result.retry_after, ttl, CEILING_INTERVALS * ttl)
    return ttl


@dataclass
class Entry:
    """One key's cached answer. `tag` is the key's HMAC; the key itself is never kept."""

    tag: bytes
    answer: Stored
    fetched_at: float
    expires_at: float
    facts: KeyFacts | None = None
    # Whether the upstream last accepted this key (a 200): such keys may use the whole budget.
    known_good: bool = False
    used_at: float = field(default=0.0, compare=False)

    @property
    def size(self) -> int:
        """Bytes this entry holds, roughly: its answer and a fixed overhead."""
        headers = sum(len(name) + len(value) for name, value in self.answer.headers)
        return len(self.answer.body) + headers + ENTRY_OVERHEAD

    def fresh(self, now: float) -> bool:
        return now < self.expires_at

    def age(self, now: float) -> int:
        """Whole seconds since the upstream answered, as the Age header counts them."""
        return max(0, int(now - self.fetched_at))


class Tagger:
    """Keys become HMAC-SHA256 tags under a secret that lives and dies with the process.

    A tag tells keys apart without holding them: a memory dump or a bug that prints the cache
    shows no key, and no tag can be checked against a guessed key outside this process.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        secret = secret if secret is not None else os.urandom(32)
        # Keyed once: copying a keyed HMAC costs half of keying a new one, on every request.
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)

    def tag(self, key: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(key.encode())
        return mac.digest()


class Entries:
    """The cache: at most `max_keys` entries and `max_bytes` of answers, least recently used
    evicted first."""

    def __init__(self, max_keys: int, max_bytes: int = MAX_CACHE_BYTES) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self.bytes = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def get(self, tag: bytes, now: float) -> Entry | None:
        entry = self._entries.get(tag)
        # The dictionary found it by tag already; comparing again in constant time is where an
        # answer meets the caller's key, and costs nothing.
        if entry is None or not hmac.compare_digest(entry.tag, tag):
            return None
        entry.used_at = now
        self._entries.move_to_end(tag)
        return entry

    def put(self, entry: Entry, now: float) -> None:
        entry.used_at = now
        replaced = self._entries.pop(entry.tag, None)
        if replaced is not None:
            self.bytes -= replaced.size
        self._entries[entry.tag] = entry
        self.bytes += entry.size
        # The newest entry always stays: one answer is at most 1 MiB, far under max_bytes.
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_keys or self.bytes > self.max_bytes
        ):
            self._drop_oldest()
            self.evicted += 1

    def _drop_oldest(self) -> None:
        _, oldest = self._entries.popitem(last=False)
        self.bytes -= oldest.size

    def forget_idle(self, now: float, idle: float) -> int:
        """Drops entries nobody asked for in `idle` seconds (their gauges go with them)."""
        dropped = 0
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if now - oldest.used_at < idle:
                break
            self._drop_oldest()
            dropped += 1
        return dropped


# The bucket holds at least this many calls: after an unknown key's call, which needs the whole
# reserve left over, one whole call is still there for a known key, whatever the rate (with a
# capacity of one, at --max-upstream-rate 1 or below, the reserve was nothing).
MIN_CAPACITY: Final = 1.0 / (1.0 - UNKNOWN_KEY_RESERVE)


class TokenBucket:
    """`rate` upstream calls a second on average, with bursts of up to a second's worth (two
    calls at least: `MIN_CAPACITY`)."""

    def __init__(self, rate: float, *, now: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be above 0")
        self.rate = rate
        self.capacity = max(MIN_CAPACITY, rate)
        self._tokens = self.capacity
        self._at = now

    def _refill(self, now: float) -> None:
        self._tokens = min(self.capacity, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = max(self._at, now)

    def take(self, now: float, *, reserve: float = 0.0) -> float:
        """Spends one call and returns 0, or returns the seconds until one would be allowed.

        `reserve` (a share of the capacity) must stay in the bucket after this call: callers
        with a reserve give way to those without one.
        """
        self._refill(now)
        needed = min(self.capacity, 1.0 + reserve * self.capacity)
        if self._tokens >= needed:
            self._tokens -= 1.0
            return 0.0
        return (needed - self._tokens) / self.rate
