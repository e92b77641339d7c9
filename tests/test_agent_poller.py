"""The poll loop against a real emulator over loopback, in-process; timing on fake clocks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from sidecar.agent.journal import Journal
from sidecar.agent.keys import EnvKey, FileKey
from sidecar.agent.poller import Clock, Poller
from sidecar.agent.probes import status_document
from sidecar.emulator import app as emulator
from sidecar.emulator.scenario import updated
from sidecar.outcome import Outcome
from sidecar.readiness import Event, Reason
from sidecar.secret import Secret
from sidecar.settings import AuthScheme, Settings
from tests.support import FAKE_KEY, OTHER_KEY

MakeServer = Callable[..., Awaitable[TestServer]]


class FakeTime:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def upstream(aiohttp_server: MakeServer) -> TestServer:
    return await aiohttp_server(emulator.make_app(structlog.get_logger(component="emulator")))


def scenario(server: TestServer) -> emulator.Emulator:
    return server.app[emulator.EMULATOR]


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log event, the in-process emulator's tagged with component=emulator."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture
async def poller(
    upstream: TestServer, logs: list[MutableMapping[str, Any]]
) -> AsyncIterator[Poller]:
    settings = Settings(
        api_key=Secret(FAKE_KEY), api_url=str(upstream.make_url("/")), interval=1, timeout=0.5
    )
    clock = FakeTime()
    log = structlog.get_logger()
    async with Poller(
        settings,
        EnvKey(Secret(FAKE_KEY)),
        log=log,
        observers=[Journal(log, mono=clock)],
        clock=Clock(mono=clock),
    ) as running:
        yield running


# One attempt against the emulator.


async def test_a_good_poll(poller: Poller, logs: list[MutableMapping[str, Any]]) -> None:
    result = await poller.poll_once()
    assert result is not None
    assert result.outcome is Outcome.OK
    assert poller.verdict().ready
    state = poller.snapshot()
    assert state.whoami is not None
    assert state.whoami.organization_name == "Acme Growth"
    assert state.last_request_id is not None
    assert state.last_request_id.startswith("req_")
    # One line: the change of verdict, carrying the answer that caused it.
    events = [e for e in logs if e.get("component") != "emulator"]
    assert [e["event"] for e in events] == ["ready"]
    assert events[0]["log_level"] == "info"
    assert events[0]["outcome"] == "ok"
    assert events[0]["apiKeyId"] == emulator.api_key_id("k1")
    assert events[0]["organizationId"] == "2481fa5c-a404-44ed-a561-565392499abc"


async def test_a_kill_switch_is_logged_at_error_with_context(
    poller: Poller, upstream: TestServer, logs: list[MutableMapping[str, Any]]
) -> None:
    scenario(upstream).scenario.killSwitch = True
    await poller.poll_once()
    assert poller.verdict().reason is Reason.KILL_SWITCH
    # Cause and effect in one line, not a "whoami failed" beside a "not ready" with one detail.
    [changed] = [e for e in logs if e.get("component") != "emulator"]
    assert changed["event"] == "not ready"
    assert changed["log_level"] == "error"
    assert changed["reason"] == "kill_switch"
    assert changed["outcome"] == "kill_switch"
    assert changed["requestId"].startswith("req_")


@pytest.mark.parametrize(
    ("patch", "outcome"),
    [
        ({"delay": 2}, Outcome.TIMEOUT),
        ({"failure": "reset"}, Outcome.NETWORK_ERROR),
        ({"failure": "truncated"}, Outcome.NETWORK_ERROR),
        ({"failure": "garbage"}, Outcome.INVALID_RESPONSE),
        ({"failure": "huge"}, Outcome.INVALID_RESPONSE),
        ({"failure": "redirect"}, Outcome.CLIENT_ERROR),
        ({"failure": "billing_exhausted"}, Outcome.BILLING_EXHAUSTED),
        ({"failure": "kill_switch"}, Outcome.KILL_SWITCH),
        ({"failure": "rate_limited", "retryAfter": 9}, Outcome.RATE_LIMITED),
    ],
)
async def test_upstream_faults_become_outcomes(
    poller: Poller, upstream: TestServer, patch: dict[str, Any], outcome: Outcome
) -> None:
    app_state = scenario(upstream)
    app_state.scenario = updated(app_state.scenario, patch)
    result = await poller.poll_once()
    assert result is not None
    assert result.outcome is outcome
    if outcome is Outcome.RATE_LIMITED:
        assert result.retry_after == 9


async def test_redirects_are_not_followed(poller: Poller, upstream: TestServer) -> None:
    scenario(upstream).scenario.failure = "redirect"
    await poller.poll_once()
    # Only the one request reached the emulator; nothing went to the Location.
    assert scenario(upstream).whoami_requests == 1


async def test_connection_refused_is_a_network_error(logs: list[MutableMapping[str, Any]]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = Settings(api_key=Secret(FAKE_KEY), api_url=f"http://127.0.0.1:{port}", timeout=1)
    async with Poller(settings, EnvKey(Secret(FAKE_KEY)), log=structlog.get_logger()) as poller:
        result = await poller.poll_once()
    assert result is not None
    assert result.outcome is Outcome.NETWORK_ERROR
    assert "127.0.0.1" in result.detail


async def test_bearer_scheme(upstream: TestServer) -> None:
    settings = Settings(
        api_key=Secret(FAKE_KEY), api_url=str(upstream.make_url("/")), auth_scheme=AuthScheme.BEARER
    )
    async with Poller(settings, EnvKey(Secret(FAKE_KEY)), log=structlog.get_logger()) as poller:
        await poller.poll_once()
    assert scenario(upstream).last_auth == "bearer"


async def test_liveness_follows_the_loop(poller: Poller) -> None:
    assert not poller.alive()
    poller.start()
    assert poller.alive()
    await poller.stop()
    assert not poller.alive()


async def test_a_stalled_loop_is_not_alive(upstream: TestServer) -> None:
    clock = FakeTime()
    settings = Settings(api_key=Secret(FAKE_KEY), api_url=str(upstream.make_url("/")), interval=1)
    async with Poller(
        settings, EnvKey(Secret(FAKE_KEY)), log=structlog.get_logger(), clock=Clock(mono=clock)
    ) as poller:
        scenario(upstream).scenario.delay = 3600  # the request never ends on its own...
        poller.start()
        async with asyncio.timeout(5):
            while scenario(upstream).whoami_requests == 0:  # noqa: ASYNC110 (a counter, no event)
                await asyncio.sleep(0.01)
        assert poller.alive()
        clock.now += settings.timeout + 11  # ...and the clock says it is far past its timeout
        assert not poller.alive()


async def test_a_crashed_loop_is_neither_ready_nor_alive(
    poller: Poller, logs: list[MutableMapping[str, Any]]
) -> None:
    async def explode(**_: float | None) -> None:
        raise RuntimeError("a bug")

    await poller.poll_once()
    assert poller.verdict().ready
    poller.poll_once = explode  # type: ignore[method-assign]
    poller.start()
    async with asyncio.timeout(5):
        while poller.alive():  # noqa: ASYNC110 (the task has no event to wait on)
            await asyncio.sleep(0.01)
    assert not poller.verdict().ready
    await poller.stop()
    assert any(e["event"] == "poll loop crashed" for e in logs)


# Identity follows the key; the stale moment reaches the observers.


async def test_a_rotated_key_that_fails_is_never_shown_as_the_old_one(
    upstream: TestServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(FAKE_KEY)
    scenario(upstream).scenario.revokedKeyIds = ["k2"]
    settings = Settings(api_key_file=key_file, api_url=str(upstream.make_url("/")))
    seen: list[Event] = []
    async with Poller(
        settings, FileKey(key_file), log=structlog.get_logger(), observers=[seen.append]
    ) as poller:
        await poller.poll_once()
        first = poller.snapshot()
        assert first.whoami is not None
        assert first.whoami.api_key_id == emulator.api_key_id("k1")
        key_file.write_text(OTHER_KEY)
        await poller.poll_once()
    state = poller.snapshot()
    assert poller.verdict().reason is Reason.UNAUTHENTICATED
    assert state.whoami is None  # not k1's apiKeyId, organization or balance
    assert state.key_fingerprint not in (None, first.key_fingerprint)
    document = status_document(state, poller.verdict())
    assert document["apiKeyId"] is None
    assert document["keyFingerprint"] == state.key_fingerprint
    assert seen[-1].state is state


async def test_the_observers_hear_of_a_stale_verdict_when_it_goes_stale(
    upstream: TestServer,
) -> None:
    now = FakeTime()
    slept: list[float] = []
    seen: list[Event] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        now.now += seconds
        if len(slept) >= 2:
            raise asyncio.CancelledError  # enough: the loop has woken once on the way

    settings = Settings(
        api_key=Secret(FAKE_KEY), api_url=str(upstream.make_url("/")), interval=30, stale_after=90
    )
    clock = Clock(mono=now, sleep=sleep)
    async with Poller(
        settings,
        EnvKey(Secret(FAKE_KEY)),
        log=structlog.get_logger(),
        observers=[seen.append],
        clock=clock,
    ) as poller:
        await poller.poll_once()  # ok at 5000
        current = scenario(upstream).scenario
        current.failure, current.retryAfter = "rate_limited", 300  # the next poll is far away
        poller.start()
        with contextlib.suppress(asyncio.CancelledError):
            await poller._task  # type: ignore[misc]
    # One 429, then a wake-up at the stale moment (90 s after the ok), not 300 s later.
    assert slept[0] == pytest.approx(90, abs=0.1)
    assert seen[-1].result is None
    assert seen[-1].verdict.reason is Reason.STALE


# Fallback mode: a hub that gives no answer costs Layers no more than no hub.


async def test_a_refused_hub_sends_the_fallback_one_poll_per_fallback_interval(
    upstream: TestServer, aiohttp_server: MakeServer
) -> None:
    """On a fake clock: 10 simulated minutes with the hub refused, then the hub back."""
    now = FakeTime()
    seen: list[Event] = []
    hub_port = free_port_number()
    hub_back_at = now.now + 600
    hub: list[TestServer] = []

    async def sleep(seconds: float) -> None:
        assert seconds >= 0
        now.now += seconds
        if not hub and now.now >= hub_back_at:
            hub.append(await aiohttp_server(make_hub_app(now), port=hub_port))
        if now.now >= hub_back_at + 60:
            raise asyncio.CancelledError

    settings = Settings(
        api_key=Secret(FAKE_KEY),
        api_url=f"http://127.0.0.1:{hub_port}",
        fallback_api_url=str(upstream.make_url("/")),
        interval=1,
        timeout=2,
        fallback_interval=30,
    )
    async with Poller(
        settings,
        EnvKey(Secret(FAKE_KEY)),
        log=structlog.get_logger(),
        observers=[seen.append],
        clock=Clock(mono=now, sleep=sleep),
    ) as poller:
        poller.start()
        with contextlib.suppress(asyncio.CancelledError):
            await poller._task  # type: ignore[misc]
    polls = [e for e in seen if e.result is not None]
    during = [e for e in polls if e.fallback is not None]
    # Direct mode at --fallback-interval 30s would make 20 calls in 600 s (and the first poll).
    assert scenario(upstream).whoami_requests <= 600 / 30 + 1
    assert len(during) >= 600 / (30 * 1.1)  # and Layers is still asked: readiness holds
    assert all(e.verdict.ready for e in polls)
    # Back at the hub's cadence (1 s) within one --fallback-interval of its return.
    hub_calls = hub[0].app[HUB_CALLS]
    assert hub_calls[0] <= hub_back_at + 30 * 1.1
    assert len(hub_calls) >= 60 - 30 * 1.1 - 1
    assert all(b - a <= 1.01 for a, b in itertools.pairwise(hub_calls))


async def test_a_kill_switch_is_seen_within_the_bound_with_the_hub_black_holed(
    upstream: TestServer,
) -> None:
    """A black-holed hub (accepts, never answers): no hub try waits over --timeout, and a kill
    switch set at any moment is seen within --fallback-interval + 2 x --timeout (real time, small
    settings)."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(64)
        settings = Settings(
            api_key=Secret(FAKE_KEY),
            api_url=f"http://127.0.0.1:{hole.getsockname()[1]}",
            fallback_api_url=str(upstream.make_url("/")),
            interval=0.05,
            timeout=0.3,
            fallback_interval=0.6,
        )
        seen: list[tuple[float, Event]] = []
        loop = asyncio.get_running_loop()
        async with Poller(
            settings,
            EnvKey(Secret(FAKE_KEY)),
            log=structlog.get_logger(),
            observers=[lambda event: seen.append((loop.time(), event))],
        ) as poller:
            poller.start()
            await asyncio.sleep(2.5)
            switched = loop.time()
            scenario(upstream).scenario.failure = "kill_switch"
            while not any(e.result and e.result.outcome is Outcome.KILL_SWITCH for _, e in seen):
                assert loop.time() - switched < 5, "kill switch never seen"
                await asyncio.sleep(0.02)
            seen_at = next(
                t for t, e in seen if e.result and e.result.outcome is Outcome.KILL_SWITCH
            )
    bound = settings.fallback_interval + 2 * settings.timeout
    assert seen_at - switched <= bound + 0.25  # a loaded machine's scheduling slack
    polls = [t for t, e in seen if e.result is not None and e.fallback is not None]
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    # Never more often than --fallback-interval (each gap is a wait plus the hub's timeout).
    assert gaps
    assert min(gaps) >= settings.fallback_interval
    # And no poll waited on the hole past one --timeout before the fallback answered.
    assert max(gaps) <= settings.fallback_interval * 1.1 + settings.timeout + 0.25


HUB_CALLS = web.AppKey("hub_calls", list[float])


def make_hub_app(clock: Callable[[], float]) -> web.Application:
    """A stand-in hub (the emulator) that records when, on the poller's clock, it was asked."""
    calls: list[float] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        calls.append(clock())
        return await handler(request)  # type: ignore[no-any-return]

    app = emulator.make_app(structlog.get_logger(component="hub"))
    app.middlewares.append(record)
    app[HUB_CALLS] = calls
    return app


def free_port_number() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
