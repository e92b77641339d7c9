"""aiohttp's own error reports become rate-limited JSON lines, never a traceback."""

from __future__ import annotations

import asyncio

import pytest
import structlog
from structlog.testing import capture_logs

from sidecar.agent.metrics import Metrics
from sidecar.agent.probes import make_app
from sidecar.runtime.server import Address, listening
from sidecar.settings import Listen
from tests.support import FakeSource


@pytest.fixture
def source() -> FakeSource:
    return FakeSource()


async def test_a_malformed_request_is_one_json_line_not_a_traceback(
    source: FakeSource, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = Metrics()
    metrics.watch(source)
    with capture_logs() as logs:
        async with listening(
            make_app(source, metrics.registry), Listen("127.0.0.1", 0), structlog.get_logger()
        ) as runner:
            port = Address.of(runner).port
            for _ in range(20):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /readyz HTTP/1.1\r\nBad Header\r\n\r\n")
                async with asyncio.timeout(10):
                    assert b" 400 " in (await reader.read()).split(b"\r\n")[0]
                writer.close()
                await writer.wait_closed()
    errors = [line for line in logs if line["event"] == "http error"]
    assert len(errors) == 1  # twenty bad requests within a second: one line
    assert "Traceback" not in capsys.readouterr().err
