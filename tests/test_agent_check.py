"""`check`'s retry loop in-process against the emulator over loopback, on a fake clock: the
deadline logic without subprocesses and without waiting."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from sidecar.agent.check import MIN_ATTEMPT, WAIT_REMINDER, run_check, shown_url
from sidecar.agent.keys import EnvKey, FileKey
from sidecar.agent.poller import Clock
from sidecar.commands import load_command
from sidecar.emulator import app as emulator
from sidecar.exits import (
    EXIT_BILLING,
    EXIT_CONFIG,
    EXIT_DEADLINE,
    EXIT_READY,
    EXIT_STOPPED,
    EXIT_UNAUTHENTICATED,
)
from sidecar.secret import Secret
from sidecar.settings import Settings
from tests.support import FAKE_KEY

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
Logs = list[MutableMapping[str, Any]]


class FakeClock:
    """Monotonic time that only moves when check sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def mono(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> Clock:
        return Clock(mono=self.mono, sleep=self.sleep)


@pytest.fixture
async def upstream(aiohttp_server: MakeServer) -> TestServer:
    return await aiohttp_server(emulator.make_app(structlog.get_logger(component="emulator")))


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_logs() as captured:
        yield captured


def scenario(server: TestServer) -> emulator.Emulator:
    return server.app[emulator.EMULATOR]


def settings(server: TestServer, **changes: Any) -> Settings:
    values: dict[str, Any] = {"api_url": str(server.make_url("/")).rstrip("/"), **changes}
    return Settings(api_key=Secret(FAKE_KEY), **values)


async def check(server: TestServer, fake: FakeClock, **changes: Any) -> int:
    return await run_check(settings(server, **changes), structlog.get_logger(), clock=fake.clock())


def own(logs: Logs) -> Logs:
    return [e for e in logs if e.get("component") != "emulator"]


async def test_a_healthy_key_passes_in_one_attempt(upstream: TestServer, logs: Logs) -> None:
    assert await check(upstream, FakeClock()) == EXIT_READY
    [line] = own(logs)
    assert line["event"] == "check passed"
    assert line["apiKeyId"] == emulator.api_key_id("k1")
    assert line["url"].endswith("/v1/whoami")


async def test_transients_are_retried_with_back_off_until_the_deadline(
    upstream: TestServer, logs: Logs
) -> None:
    scenario(upstream).scenario.failure = "server_error"
    fake = FakeClock()
    assert await check(upstream, fake, deadline=10.0, interval=30.0) == EXIT_DEADLINE
    assert sum(fake.sleeps) <= 10.0  # never slept past the deadline
    assert len(fake.sleeps) >= 3
    assert max(fake.sleeps) > min(fake.sleeps)  # backing off, not a fixed beat
    assert scenario(upstream).whoami_requests == len(fake.sleeps) + 1
    *retries, last = own(logs)
    assert {r["event"] for r in retries} == {"check retrying"}
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert last["event"] == "check failed"
    assert last["exitCode"] == EXIT_DEADLINE
    assert last["reason"] == "server_error"  # what happened, never "starting"
    assert "no good answer within --deadline 10s" in last["detail"]
    assert "HTTP 500" in last["detail"]
    assert last["attempts"] == len(retries) + 1


@pytest.mark.parametrize("deadline", [5.0, 20.0])
async def test_the_back_off_is_capped_by_the_deadline_not_a_reason_to_give_up_early(
    upstream: TestServer, logs: Logs, deadline: float
) -> None:
    # Before: a 500 upstream ended `--deadline 20s` at about 11 s and `--deadline 5s` at about
    # 2 s, because the next back-off step did not fit. Now the last wait is cut so that one
    # more attempt gets MIN_ATTEMPT before the deadline.
    scenario(upstream).scenario.failure = "server_error"
    fake = FakeClock()
    assert await check(upstream, fake, deadline=deadline) == EXIT_DEADLINE
    # The fake clock only moves in sleeps: the last attempt starts exactly MIN_ATTEMPT before.
    assert sum(fake.sleeps) == pytest.approx(deadline - MIN_ATTEMPT)
    assert scenario(upstream).whoami_requests == len(fake.sleeps) + 1
    last = own(logs)[-1]
    assert last["attempts"] == len(fake.sleeps) + 1
    # Why it ended, truthfully: the last attempt answered with too little time left for another.
    assert f"no good answer within --deadline {deadline:g}s" in last["detail"]
    assert "attempts, the last answered 0.5s before the deadline)" in last["detail"]
    assert "HTTP 500" in last["detail"]


async def test_a_retry_after_longer_than_the_deadline_ends_now(
    upstream: TestServer, logs: Logs
) -> None:
    current = scenario(upstream).scenario
    current.failure, current.retryAfter = "rate_limited", 30
    fake = FakeClock()
    assert await check(upstream, fake, deadline=5.0) == EXIT_DEADLINE
    assert fake.sleeps == []  # no second whoami before the upstream's Retry-After
    assert scenario(upstream).whoami_requests == 1
    [line] = own(logs)
    assert line["reason"] == "rate_limited"
    assert "asked to wait 30s" in line["detail"]
    assert "--deadline 5s leaves 5.0s" in line["detail"]


async def test_a_retry_after_within_the_deadline_is_honoured(upstream: TestServer) -> None:
    current = scenario(upstream).scenario
    current.failure, current.retryAfter = "rate_limited", 3
    fake = FakeClock()

    async def sleep_then_clear(seconds: float) -> None:
        await FakeClock.sleep(fake, seconds)
        current.failure = None

    clock = Clock(mono=fake.mono, sleep=sleep_then_clear)
    code = await run_check(settings(upstream, deadline=60.0), structlog.get_logger(), clock=clock)
    assert code == EXIT_READY
    assert fake.sleeps == [3]


async def test_a_hard_stop_ends_at_once_in_one_line(upstream: TestServer, logs: Logs) -> None:
    scenario(upstream).scenario.failure = "billing_exhausted"
    fake = FakeClock()
    assert await check(upstream, fake) == EXIT_BILLING
    assert fake.sleeps == []
    [line] = own(logs)
    assert (line["event"], line["reason"]) == ("check failed", "billing_exhausted")
    assert line["requestId"].startswith("req_")


async def test_a_wrong_url_is_named(upstream: TestServer, logs: Logs) -> None:
    wrong = settings(upstream, api_url=str(upstream.make_url("/nope")))
    code = await run_check(wrong, structlog.get_logger(), clock=FakeClock().clock())
    assert code == EXIT_UNAUTHENTICATED  # a 404: wrong URL or key
    [line] = own(logs)
    assert line["url"].endswith("/nope/v1/whoami")
    assert "HTTP 404" in line["detail"]


async def test_a_missing_key_file_is_a_configuration_error(
    upstream: TestServer, logs: Logs, tmp_path: Path
) -> None:
    keys = FileKey(tmp_path / "absent")
    code = await run_check(
        settings(upstream), structlog.get_logger(), keys=keys, clock=FakeClock().clock()
    )
    assert code == EXIT_CONFIG
    [line] = own(logs)
    assert line["reason"] == "key_unavailable"
    assert "does not exist" in line["detail"]
    assert "apiKeyId" not in line  # no None placeholders


async def test_check_ends_within_a_tenth_of_a_second_of_the_deadline(
    upstream: TestServer,
) -> None:
    scenario(upstream).scenario.delay = 30  # an upstream that never answers in time
    started = time.monotonic()
    code = await run_check(
        settings(upstream, deadline=0.5, timeout=10.0),
        structlog.get_logger(),
        keys=EnvKey(Secret(FAKE_KEY)),
    )
    assert code == EXIT_DEADLINE
    assert time.monotonic() - started < 0.5 + 0.1


def test_a_url_is_shown_without_credentials() -> None:
    assert shown_url("https://user:pw@api.example:8443/v1/whoami") == (
        "https://api.example:8443/v1/whoami"
    )
    assert shown_url("https://api.layers.com/v1/whoami") == "https://api.layers.com/v1/whoami"


class Until:
    """A fake clock that runs `then` once `after` seconds have passed: Layers clearing a switch."""

    def __init__(self, after: float, then: Callable[[], object]) -> None:
        self.fake, self.after, self.then = FakeClock(), after, then

    async def sleep(self, seconds: float) -> None:
        await self.fake.sleep(seconds)
        if self.fake.now - 1000.0 >= self.after:
            self.then()

    def clock(self) -> Clock:
        return Clock(mono=self.fake.mono, sleep=self.sleep)


def waits(logs: Logs) -> Logs:
    return [e for e in own(logs) if e["event"] in ("check waiting", "check still waiting")]


async def test_wait_holds_through_a_kill_switch_and_passes_within_one_interval_of_it_clearing(
    upstream: TestServer, logs: Logs
) -> None:
    current = scenario(upstream).scenario
    current.killSwitch = True

    def clear() -> None:
        current.killSwitch = False

    until = Until(250.0, clear)  # cleared after a little over 4 minutes
    run = settings(upstream, wait=True, deadline=float("inf"), interval=30.0)
    assert await run_check(run, structlog.get_logger(), clock=until.clock()) == EXIT_READY
    # A hard stop is asked again every --interval, never faster and never given up on.
    assert set(until.fake.sleeps) == {30.0}
    # Passed at the first attempt after the switch cleared: within one interval of it.
    assert until.fake.now - 1000.0 - 250.0 < 30.0
    assert scenario(upstream).whoami_requests == len(until.fake.sleeps) + 1
    lines = waits(logs)
    # One line when the reason appeared, then a reminder at most once a minute.
    assert lines[0]["event"] == "check waiting"
    assert {line["reason"] for line in lines} == {"kill_switch"}
    assert [line["event"] for line in lines[1:]] == ["check still waiting"] * (len(lines) - 1)
    times = [line["waitedSeconds"] for line in lines]
    assert all(b - a >= WAIT_REMINDER for a, b in itertools.pairwise(times))
    assert len(lines) < len(until.fake.sleeps)  # not one line per attempt
    assert own(logs)[-1]["event"] == "check passed"


async def test_wait_logs_each_change_of_reason(upstream: TestServer, logs: Logs) -> None:
    current = scenario(upstream).scenario
    current.failure = "server_error"
    steps: Iterator[str | None] = iter(["kill_switch", None])
    fake = FakeClock()

    async def sleep(seconds: float) -> None:
        await fake.sleep(seconds)
        # Each new reason after a few attempts of the one before.
        if len(fake.sleeps) % 3 == 0:
            current.failure = next(steps, None)

    clock = Clock(mono=fake.mono, sleep=sleep)
    run = settings(upstream, wait=True, deadline=float("inf"), interval=5.0)
    assert await run_check(run, structlog.get_logger(), clock=clock) == EXIT_READY
    assert [line["reason"] for line in waits(logs) if line["event"] == "check waiting"] == [
        "server_error",
        "kill_switch",
    ]


async def test_wait_with_a_deadline_ends_there_with_the_code_of_the_last_outcome(
    upstream: TestServer, logs: Logs
) -> None:
    scenario(upstream).scenario.killSwitch = True
    fake = FakeClock()
    code = await check(upstream, fake, wait=True, deadline=100.0, interval=30.0)
    assert code == EXIT_STOPPED  # the kill switch's own code, not 1
    assert sum(fake.sleeps) == pytest.approx(100.0 - MIN_ATTEMPT)  # the last one just fits
    last = own(logs)[-1]
    assert (last["event"], last["reason"]) == ("check failed", "kill_switch")
    assert "no good answer within --deadline 100s" in last["detail"]


async def test_wait_with_a_deadline_on_transients_ends_with_code_1(upstream: TestServer) -> None:
    scenario(upstream).scenario.failure = "unavailable"
    fake = FakeClock()
    assert await check(upstream, fake, wait=True, deadline=20.0) == EXIT_DEADLINE
    assert sum(fake.sleeps) == pytest.approx(20.0 - MIN_ATTEMPT)


async def test_wait_waits_for_a_key_file_that_is_not_there_yet(
    upstream: TestServer, tmp_path: Path
) -> None:
    path = tmp_path / "api-key"
    until = Until(60.0, lambda: path.write_text(FAKE_KEY))
    run = settings(upstream, wait=True, deadline=float("inf"), interval=30.0)
    code = await run_check(run, structlog.get_logger(), keys=FileKey(path), clock=until.clock())
    assert code == EXIT_READY
    assert until.fake.sleeps == [30.0, 30.0]


def test_wait_without_a_deadline_waits_for_ever_and_a_given_one_is_kept() -> None:
    env = {"LAYERS_API_KEY": FAKE_KEY}
    assert load_command("check", {"wait": "true"}, env).deadline == float("inf")
    assert load_command("check", {}, {**env, "LAYERS_SIDECAR_WAIT": "1"}).deadline == float("inf")
    given = {**env, "LAYERS_SIDECAR_WAIT": "true", "LAYERS_SIDECAR_DEADLINE": "10m"}
    assert load_command("check", {}, given).deadline == 600.0
    assert load_command("check", {"wait": "true", "deadline": "0"}, env).deadline == 0.0
    without = load_command("check", {}, env)
    assert (without.wait, without.deadline) == (False, 60.0)
