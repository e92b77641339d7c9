"""An answer reaches only the key that asked, even when the upstream (or a proxy in front of it)
writes an extra response on an idle pooled keep-alive connection.

A raw-socket upstream (tests/hostile.py, keep-alive) answers key A's call with A's 200 and then,
on the same connection, a second 200 nobody asked for; key B's secret is wrong (401). The extra
response must never become B's answer: not in the whoami client `serve` and `check` share, not in
the hub (which would also cache it).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from sidecar.outcome import classify
from sidecar.secret import Secret
from sidecar.values import AuthScheme
from sidecar.whoami import client_session, fetch
from tests.hostile import GOOD, Hostile, hostile, response
from tests.support import FAKE_KEY, OTHER_KEY, http, hub, wait_for

EXTRA_ID = "key_EXTRA_never_asked_for"


def answer(head: bytes) -> bytes:
    if FAKE_KEY.encode() in head:
        return response(200, {**GOOD, "apiKeyId": "key_A"}, close=False)
    error = {"error": {"code": "UNAUTHENTICATED", "message": "Invalid API key."}}
    return response(401, error, close=False)


def extra(head: bytes) -> bytes:
    """After key A's answer only: a second 200, on the idle connection."""
    if FAKE_KEY.encode() not in head:
        return b""
    body = {**GOOD, "apiKeyId": EXTRA_ID}
    return response(200, body, headers={"X-Request-Id": "req_extra"}, close=False)


@pytest.fixture
def upstream() -> Iterator[Hostile]:
    with hostile(answer) as running:
        running.keep_alive = True
        running.late = extra
        yield running


def extra_written(upstream: Hostile, count: int) -> bool:
    return upstream.late_written >= count


async def test_the_whoami_client_never_gives_a_pooled_extra_answer_to_the_next_key(
    upstream: Hostile,
) -> None:
    url = upstream.url + "/v1/whoami"
    async with client_session() as session:
        for _ in range(3):
            first = await fetch(
                session, url, Secret(FAKE_KEY), scheme=AuthScheme.X_API_KEY, timeout=5
            )
            assert first.status == 200
            assert b"key_A" in first.body
            # The extra response is on the idle pooled connection before the next call.
            written = partial(extra_written, upstream, len(upstream.requests))
            await asyncio.to_thread(wait_for, written, what="the extra response written")
            other = await fetch(
                session, url, Secret(OTHER_KEY), scheme=AuthScheme.X_API_KEY, timeout=5
            )
            assert other.status == 401, other.body
            assert EXTRA_ID.encode() not in other.body
            assert classify(other, 0.0).whoami is None
    # Every call reached the upstream: none was answered from a buffer.
    assert len(upstream.requests) == 6


def test_the_hub_never_gives_or_caches_a_pooled_extra_answer_for_another_key(
    upstream: Hostile, tmp_path: Path
) -> None:
    with hub(tmp_path, upstream.url, "--ttl", "1m") as running:
        for _ in range(3):
            mine = running.get("/v1/whoami", headers={"X-Api-Key": FAKE_KEY})
            assert mine.status == 200
            assert json.loads(mine.body)["apiKeyId"] == "key_A"
        wait_for(partial(extra_written, upstream, 1), what="the extra response written")
        for _ in range(3):
            # A wrong secret: 401 each time (cached as such), never the extra 200.
            theirs = running.get("/v1/whoami", headers={"X-Api-Key": OTHER_KEY})
            assert theirs.status == 401, theirs.body
            assert EXTRA_ID not in theirs.body
        assert EXTRA_ID not in http("GET", running.url + "/metrics").body
