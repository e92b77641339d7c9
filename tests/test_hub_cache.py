"""The hub's pure core: entries, TTLs, the upstream budget and the bound on keys. No network."""

from __future__ import annotations

import pytest

from sidecar.hub.cache import (
    FAILURE_TTL,
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
from sidecar.outcome import Outcome, Result
from tests.support import WHOAMI_PARSED as WHOAMI

FACTS = KeyFacts("key-1", "org-1", 2540, kill_switch=False, access_revoked=False)


def entry(tag: bytes, *, at: float = 0.0, ttl: float = 5.0) -> Entry:
    return Entry(tag, Stored(200, b"{}"), fetched_at=at, expires_at=at + ttl)


# How long an answer serves.


@pytest.mark.parametrize(
    "outcome",
    [Outcome.OK, Outcome.KILL_SWITCH, Outcome.UNAUTHENTICATED, Outcome.SERVER_ERROR],
)
def test_every_http_answer_serves_for_the_ttl(outcome: Outcome) -> None:
    assert ttl_for(Result(outcome, status=200), ttl=5) == 5


@pytest.mark.parametrize("outcome", [Outcome.TIMEOUT, Outcome.NETWORK_ERROR])
def test_a_transport_failure_serves_for_one_second(outcome: Outcome) -> None:
    assert ttl_for(Result(outcome), ttl=5) == FAILURE_TTL == 1.0


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (None, 5.0),  # nothing (or nothing parseable) stated: the TTL
        (2.0, 5.0),  # sooner than the TTL: the TTL still holds
        (30.0, 30.0),  # later: as long as the upstream asked
        (3600.0, 50.0),  # far later: bounded at 10 x --ttl
    ],
)
def test_a_429_holds_until_its_retry_after_within_bounds(
    retry_after: float | None, expected: float
) -> None:
    result = Result(Outcome.RATE_LIMITED, status=429, retry_after=retry_after)
    assert ttl_for(result, ttl=5) == expected


# What the per-key gauges show.


def test_a_good_answer_states_every_fact() -> None:
    assert facts_after(None, Result(Outcome.OK, whoami=WHOAMI)) == FACTS


def test_a_503_kill_switch_changes_only_the_switch() -> None:
    result = Result(Outcome.KILL_SWITCH, status=503, kill_switch=True)
    facts = facts_after(FACTS, result)
    assert facts is not None
    assert facts.kill_switch
    assert facts.credit_balance == 2540
    assert facts_after(None, result) is None  # no public labels known yet: no series


def test_a_malformed_200_changes_only_the_switches_it_states() -> None:
    revoked = Result(Outcome.ACCESS_REVOKED, status=200, access_revoked=True)
    facts = facts_after(FACTS, revoked)
    assert facts is not None
    assert (facts.access_revoked, facts.kill_switch, facts.credit_balance) == (True, False, 2540)
    killed = facts_after(facts, Result(Outcome.KILL_SWITCH, status=200, kill_switch=True))
    assert killed is not None
    assert (killed.access_revoked, killed.kill_switch) == (True, True)


@pytest.mark.parametrize("outcome", [Outcome.UNAUTHENTICATED, Outcome.TIMEOUT])
def test_other_answers_leave_the_facts_as_they_were(outcome: Outcome) -> None:
    assert facts_after(FACTS, Result(outcome)) is FACTS


# Keys as tags.


def test_tags_tell_keys_apart_and_depend_on_the_process_secret() -> None:
    tagger = Tagger(b"s" * 32)
    assert tagger.tag("lp_test_k1_A") == tagger.tag("lp_test_k1_A")
    assert tagger.tag("lp_test_k1_A") != tagger.tag("lp_test_k1_B")
    assert Tagger(b"t" * 32).tag("lp_test_k1_A") != tagger.tag("lp_test_k1_A")
    assert b"lp_test" not in tagger.tag("lp_test_k1_A")
    assert Tagger().tag("x") != Tagger().tag("x")  # a fresh random secret per process


# The cache's bounds.


def test_entries_are_found_only_by_their_own_tag() -> None:
    entries = Entries(10)
    entries.put(entry(b"a" * 32), now=0)
    assert entries.get(b"a" * 32, now=1) is not None
    assert entries.get(b"b" * 32, now=1) is None


def test_the_least_recently_used_key_goes_first() -> None:
    entries = Entries(2)
    entries.put(entry(b"a"), now=0)
    entries.put(entry(b"b"), now=1)
    assert entries.get(b"a", now=2) is not None  # a is now the most recently used
    entries.put(entry(b"c"), now=3)
    assert len(entries) == 2
    assert entries.evicted == 1
    assert entries.get(b"b", now=4) is None
    assert entries.get(b"a", now=4) is not None
    assert entries.get(b"c", now=4) is not None


def test_a_flood_of_keys_stays_within_max_keys() -> None:
    entries = Entries(100)
    for i in range(10_000):
        entries.put(entry(i.to_bytes(4, "big")), now=i)
    assert len(entries) == 100
    assert entries.evicted == 9_900


def test_the_cache_stays_within_its_bytes() -> None:
    entries = Entries(1000, max_bytes=5 * 1024 * 1024)
    big = Stored(200, b"x" * 1024 * 1024)
    for i in range(20):
        entries.put(Entry(i.to_bytes(4, "big"), big, fetched_at=0, expires_at=5), now=i)
        assert entries.bytes <= entries.max_bytes
    assert len(entries) == 4
    assert entries.get((19).to_bytes(4, "big"), now=20) is not None  # the newest stay
    assert entries.get((0).to_bytes(4, "big"), now=20) is None


def test_replacing_an_entry_counts_its_bytes_once() -> None:
    entries = Entries(10)
    for now in range(5):
        entries.put(entry(b"a"), now=now)
    assert entries.bytes == entry(b"a").size


def test_idle_keys_are_forgotten() -> None:
    entries = Entries(10)
    entries.put(entry(b"old"), now=0)
    entries.put(entry(b"new"), now=500)
    assert entries.forget_idle(now=650, idle=600) == 1
    assert [e.tag for e in entries] == [b"new"]
    assert entries.bytes == entry(b"new").size


def test_freshness_and_age() -> None:
    cached = entry(b"a", at=100, ttl=5)
    assert cached.fresh(104.9)
    assert not cached.fresh(105)
    assert cached.age(102.7) == 2
    assert cached.age(99) == 0


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        Entries(0)


# The upstream budget.


def test_the_budget_allows_a_burst_of_one_second_then_the_rate() -> None:
    bucket = TokenBucket(10, now=0)
    assert [bucket.take(0) for _ in range(10)] == [0.0] * 10
    wait = bucket.take(0)
    assert wait == pytest.approx(0.1)
    assert bucket.take(0.1) == 0.0  # one more token after 1/rate seconds
    assert bucket.take(0.1) > 0


def test_the_budget_refills_no_further_than_its_capacity() -> None:
    bucket = TokenBucket(2, now=0)
    calls = sum(bucket.take(1000) == 0 for _ in range(10))
    assert calls == 2


@pytest.mark.parametrize("rate", [0.01, 0.5, 1, 1.5, 2, 3, 20, 1000])
def test_a_known_key_gets_every_refresh_through_a_flood_of_unknown_keys(rate: float) -> None:
    """Unknown keys try every 10 ms for 2,000 seconds; one known key every 5 s (the
    default --ttl) gets each of its calls, at every allowed rate (or as often as the rate allows
    when it is below one call per 5 s)."""
    bucket = TokenBucket(rate, now=0)
    known_period = max(5.0, 1.0 / rate)
    refreshed = refused = unknown = 0
    next_known = 0.0
    for step in range(200_000):
        now = step / 100  # 2,000 s
        if now >= next_known:
            if bucket.take(now) == 0:
                refreshed += 1
            else:
                refused += 1
            next_known += known_period
        if bucket.take(now, reserve=UNKNOWN_KEY_RESERVE) == 0:
            unknown += 1
    assert refused == 0
    assert refreshed == pytest.approx(2_000 / known_period, abs=1)
    # And the flood together with the known key stays within the budget.
    assert refreshed + unknown <= rate * 2_000 + bucket.capacity


def test_unknown_keys_give_way_to_known_ones() -> None:
    bucket = TokenBucket(10, now=0)
    unknown = 0
    while bucket.take(0, reserve=UNKNOWN_KEY_RESERVE) == 0:
        unknown += 1
    assert unknown == 5  # half the burst stays for keys the upstream accepted
    assert all(bucket.take(0) == 0 for _ in range(5))
    assert bucket.take(0) > 0


def test_a_slow_budget_still_admits_unknown_keys() -> None:
    bucket = TokenBucket(0.5, now=0)
    assert bucket.take(0, reserve=UNKNOWN_KEY_RESERVE) == 0
    assert bucket.take(0, reserve=UNKNOWN_KEY_RESERVE) == pytest.approx(2.0)


def test_the_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0, now=0)
