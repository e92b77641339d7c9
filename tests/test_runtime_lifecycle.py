"""`serving(...)`, the one lifecycle, in process: it starts the site, logs once with the bound
address, runs the app's cleanup_ctx around the serving, and ends when asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import structlog
from aiohttp import web
from structlog.testing import capture_logs

from sidecar.runtime.http import text
from sidecar.runtime.lifecycle import serving
from sidecar.runtime.server import Address
from sidecar.values import Listen


async def test_serving_starts_logs_once_cleans_up_and_returns_0() -> None:
    held: list[str] = []

    async def owned(app: web.Application) -> AsyncIterator[None]:
        held.append("opened")
        yield
        held.append("closed")

    async def hello(request: web.Request) -> web.Response:
        return text("hello")

    app = web.Application()
    app.router.add_get("/", hello)
    app.cleanup_ctx.append(owned)
    quit_requested = asyncio.Event()
    addresses: asyncio.Queue[Address] = asyncio.Queue()
    with capture_logs() as logs:
        running = asyncio.create_task(
            serving(
                app,
                Listen("127.0.0.1", 0),
                structlog.get_logger(),
                "role listening",
                context=lambda address: {"address": str(address), "role": "test"},
                quit_requested=quit_requested,
                started=addresses.put_nowait,
            )
        )
        address = await asyncio.wait_for(addresses.get(), 10)
        assert held == ["opened"]
        async with aiohttp.ClientSession() as session, session.get(address.url()) as answer:
            assert await answer.text() == "hello\n"
        quit_requested.set()
        assert await asyncio.wait_for(running, 10) == 0
    assert held == ["opened", "closed"]
    assert [line["event"] for line in logs] == ["role listening", "stopping"]
    assert logs[0] == {
        "event": "role listening",
        "address": str(address),
        "role": "test",
        "log_level": "info",
    }


def test_an_address_is_a_value() -> None:
    assert str(Address("127.0.0.1", 8080)) == "127.0.0.1:8080"
    assert Address("::1", 8080).url() == "http://[::1]:8080"
    assert Address("127.0.0.1", 8443).url("https") == "https://127.0.0.1:8443"
