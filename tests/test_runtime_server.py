"""The shared runtime's bounded server, in process on loopback: the connection cap that evicts
the oldest, rate-limited error lines, the idle timeout and the open-files limit."""

from __future__ import annotations

import asyncio
import resource

import pytest
import structlog

from sidecar.agent.metrics import Metrics
from sidecar.agent.probes import make_app
from sidecar.readiness import Reason, Verdict
from sidecar.runtime import server
from sidecar.runtime.server import (
    _BATCHES_IN_FLIGHT,
    MAX_CONNECTIONS,
    RESERVED_FDS,
    Address,
    BoundedServer,
    fd_budget,
    listening,
    raise_open_files_limit,
)
from sidecar.settings import Listen
from tests.support import FakeSource


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


# Hostile clients: bounded connections, rate-limited error lines, the open-files limit.


def test_the_soft_open_files_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        raised = raise_open_files_limit()
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == raised
        assert raised == (hard if hard != resource.RLIM_INFINITY else max(256, 1 << 20))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_past_the_connection_limit_the_oldest_goes_and_a_probe_still_gets_in(
    source: FakeSource,
) -> None:
    source.current = Verdict(True, Reason.OK)
    metrics = Metrics()
    metrics.watch(source)
    async with listening(
        make_app(source, metrics.registry), Listen("127.0.0.1", 0), structlog.get_logger()
    ) as runner:
        assert isinstance(runner.server, BoundedServer)
        runner.server.limit = 4
        port = Address.of(runner).port
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(10):
            answer = await reader.read()
            # The oldest idle connection was closed to make room: it reads end-of-file.
            assert await idle[0][0].read() == b""
        assert answer.startswith(b"HTTP/1.1 200")
        assert answer.endswith(b"ok\n")
        assert runner.server.open_connections <= 4
        for _, other in [*idle, (reader, writer)]:
            other.close()
        await asyncio.gather(
            *(other.wait_closed() for _, other in [*idle, (reader, writer)]),
            return_exceptions=True,
        )


async def test_an_idle_connection_is_closed_after_the_idle_timeout(
    source: FakeSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IDLE_TIMEOUT", 0.2)
    metrics = Metrics()
    metrics.watch(source)
    async with listening(
        make_app(source, metrics.registry), Listen("127.0.0.1", 0), structlog.get_logger()
    ) as runner:
        port = Address.of(runner).port
        silent = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n")  # and never the end of it
        async with asyncio.timeout(10):
            assert await silent[0].read() == b""
            assert await half[0].read() == b""
        for _, writer in (silent, half):
            writer.close()
            await writer.wait_closed()


@pytest.mark.parametrize("soft", [256, 1024, 4096, 20_000, 1 << 20])
def test_the_connection_cap_and_accept_batches_fit_in_the_open_files_limit(soft: int) -> None:
    open_now = 20
    clients = min(256, soft // 8)  # what client_connections() gives a role at this limit
    budget = fd_budget(soft, open_now=open_now, clients=clients)
    assert budget.batch >= 2
    assert budget.limit >= 8
    in_flight = budget.limit + _BATCHES_IN_FLIGHT * budget.batch
    assert in_flight + open_now + clients + RESERVED_FDS <= soft
    if soft >= 20_000:
        assert budget.limit == MAX_CONNECTIONS
