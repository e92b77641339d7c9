"""`serve` in process: the poller, its observers and the probe app wired together on the shared
runtime, against the in-process emulator; ended by POST /quitquitquit, as a Job ends it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import structlog
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from sidecar.agent.serve import serve
from sidecar.emulator import app as emulator
from sidecar.secret import Secret
from sidecar.settings import Listen, Settings
from tests.support import FAKE_KEY

MakeServer = Callable[[web.Application], Awaitable[TestServer]]


async def until_ready(session: aiohttp.ClientSession, url: str) -> str:
    """The /readyz body once it answers 200; fails after ten seconds."""
    async with asyncio.timeout(10):
        while True:
            async with session.get(url + "/readyz") as answer:
                if answer.status == 200:
                    return await answer.text()
            await asyncio.sleep(0.02)


async def test_serve_polls_serves_writes_the_ready_file_and_stops_on_quitquitquit(
    aiohttp_server: MakeServer, tmp_path: Path
) -> None:
    upstream = await aiohttp_server(emulator.make_app(structlog.get_logger()))
    ready_file = tmp_path / "ready"
    settings = Settings(
        api_key=Secret(FAKE_KEY),
        api_url=str(upstream.make_url("/")).rstrip("/"),
        listen=Listen("127.0.0.1", 0),
        interval=0.2,
        quitquitquit=True,
        ready_file=ready_file,
    )
    urls: asyncio.Queue[str] = asyncio.Queue()
    with capture_logs() as logs:
        running = asyncio.create_task(serve(settings, structlog.get_logger(), urls.put_nowait))
        url = await asyncio.wait_for(urls.get(), 10)
        async with aiohttp.ClientSession() as session:
            assert await until_ready(session, url) == "ok\n"
            assert ready_file.exists()
            async with session.get(url + "/status") as status:
                assert (await status.json())["whoamiUrl"] == settings.whoami_url
            async with session.post(url + "/quitquitquit") as quit:
                assert (quit.status, await quit.text()) == (200, "ok: exiting\n")
        assert await asyncio.wait_for(running, 10) == 0
    assert not ready_file.exists()  # removed when the app let the poller go
    events = [line["event"] for line in logs]
    assert events.index("listening") < events.index("ready") < events.index("stopping")
    stopping = next(line for line in logs if line["event"] == "stopping")
    assert stopping["cause"] == "POST /quitquitquit"
    assert upstream.app[emulator.EMULATOR].whoami_requests >= 1
