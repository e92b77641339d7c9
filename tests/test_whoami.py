"""One call to GET /v1/whoami in process, against small aiohttp handlers on loopback: what the
`Answer` holds (the status, a bounded body, the headers kept, the kind of failure), never a
decision."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from sidecar.outcome import BODY_LIMIT, SWITCH_SEARCH_LIMIT, Failure
from sidecar.secret import Secret
from sidecar.testing import free_port
from sidecar.values import AuthScheme
from sidecar.whoami import body_limit, client_session, fetch
from tests.support import FAKE_KEY

MakeServer = Callable[[web.Application], Awaitable[TestServer]]
KEY = Secret(FAKE_KEY)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with client_session() as opened:
        yield opened


async def serving(
    aiohttp_server: MakeServer, handler: Callable[..., Awaitable[web.StreamResponse]]
) -> str:
    app = web.Application()
    app.router.add_get("/v1/whoami", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/v1/whoami"))


async def test_the_key_goes_in_the_header_its_scheme_names(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({})

    url = await serving(aiohttp_server, handler)
    for scheme in AuthScheme:
        await fetch(session, url, KEY, scheme=scheme, timeout=5)
    assert seen[0]["X-Api-Key"] == FAKE_KEY
    assert seen[1]["Authorization"] == f"Bearer {FAKE_KEY}"
    assert "X-Api-Key" not in seen[1]
    assert seen[0]["Accept-Encoding"] == "identity"


async def test_only_the_headers_that_matter_are_kept(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        headers = {"X-Request-Id": "req_1", "Retry-After": "5", "Set-Cookie": "a=b", "X-Other": "1"}
        return web.json_response({}, status=429, headers=headers)

    url = await serving(aiohttp_server, handler)
    answer = await fetch(session, url, KEY, scheme=AuthScheme.X_API_KEY, timeout=5)
    assert answer.status == 429
    assert dict(answer.headers) == {"Retry-After": "5", "X-Request-Id": "req_1"}
    assert answer.failure is None


@pytest.mark.parametrize(
    ("status", "limit"), [(200, SWITCH_SEARCH_LIMIT), (503, SWITCH_SEARCH_LIMIT), (500, BODY_LIMIT)]
)
async def test_a_body_is_read_up_to_its_limit_and_no_further(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession, status: int, limit: int
) -> None:
    assert body_limit(status) == limit

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * (limit + 10), status=status)

    url = await serving(aiohttp_server, handler)
    answer = await fetch(session, url, KEY, scheme=AuthScheme.X_API_KEY, timeout=5)
    assert (len(answer.body), answer.too_large) == (limit, True)


async def test_a_stall_is_a_timeout_that_keeps_the_status_and_what_arrived(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200, headers={"Content-Length": "1000"})
        await response.prepare(request)
        await response.write(b'{"killSwitch": true')
        await asyncio.sleep(10)
        return response

    url = await serving(aiohttp_server, handler)
    answer = await fetch(session, url, KEY, scheme=AuthScheme.X_API_KEY, timeout=0.3)
    assert answer.failure is Failure.TIMEOUT
    assert (answer.status, answer.body) == (200, b'{"killSwitch": true')
    assert answer.detail == "no answer within 0.3s"


async def test_nothing_listening_is_a_network_failure(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/whoami"
    answer = await fetch(session, url, KEY, scheme=AuthScheme.X_API_KEY, timeout=5)
    assert answer.failure is Failure.NETWORK
    assert answer.status is None
    assert answer.detail.startswith("Client")


async def test_the_hub_keeps_whole_bodies_and_the_headers_it_passes(
    aiohttp_server: MakeServer, session: aiohttp.ClientSession
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=b"y" * (BODY_LIMIT + 1), status=500, headers={"X-Kept": "1", "X-Dropped": "2"}
        )

    url = await serving(aiohttp_server, handler)
    answer = await fetch(
        session,
        url,
        KEY,
        scheme=AuthScheme.X_API_KEY,
        timeout=5,
        max_body=SWITCH_SEARCH_LIMIT,
        keep=lambda name: name.lower() == "x-kept",
    )
    assert (len(answer.body), answer.too_large) == (BODY_LIMIT + 1, False)
    assert answer.headers.get("x-kept") == "1"
    assert "X-Dropped" not in answer.headers
