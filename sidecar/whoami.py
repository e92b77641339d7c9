"""One call to GET /v1/whoami, turned into a plain `Answer`. The only place that does HTTP out.

Nothing here decides anything: a status, at most 64 KiB of body, the headers that matter and the
time taken, or the kind of transport failure, as the `Answer` that `outcome` owns;
`outcome.classify` makes the verdict.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Final

import aiohttp
from multidict import CIMultiDict

from .outcome import Answer, Failure
from .settings import AuthScheme, Secret

MAX_BODY: Final = 64 * 1024

# Only these reach the verdict or the logs; the rest of the upstream's headers are dropped.
KEPT_HEADERS: Final = (
    "Retry-After",
    "X-Request-Id",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Tier",
)


def auth_headers(key: Secret, scheme: AuthScheme) -> dict[str, str]:
    if scheme is AuthScheme.BEARER:
        return {"Authorization": f"Bearer {key.reveal()}"}
    return {"X-Api-Key": key.reveal()}


async def _read_capped(response: aiohttp.ClientResponse, limit: int) -> tuple[bytes, bool]:
    """Reads at most `limit` bytes; an 8 MiB answer must not become 8 MiB of memory."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def _describe(error: BaseException) -> str:
    # aiohttp's messages name host and port but never request headers, so the key cannot leak.
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"[:300]


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    key: Secret,
    *,
    scheme: AuthScheme,
    timeout: float,
    max_body: int = MAX_BODY,
    keep: Callable[[str], bool] | None = None,
) -> Answer:
    """GET {url} with the key; never raises for anything the network or the upstream does.

    The hub, which passes the answer on unchanged, reads up to a wider `max_body` and keeps
    every header `keep` accepts (still looked up without regard to case).
    """
    started = time.perf_counter()
    headers = {"Accept": "application/json", **auth_headers(key, scheme)}
    try:
        async with asyncio.timeout(timeout):
            async with session.get(url, headers=headers, allow_redirects=False) as response:
                body, too_large = await _read_capped(response, max_body)
                kept: Mapping[str, str] = {
                    name: response.headers[name]
                    for name in KEPT_HEADERS
                    if name in response.headers
                }
                if keep is not None:
                    kept = CIMultiDict(
                        (name, value) for name, value in response.headers.items() if keep(name)
                    )
                return Answer(
                    status=response.status,
                    body=body,
                    too_large=too_large,
                    headers=kept,
                    elapsed=time.perf_counter() - started,
                )
    except TimeoutError:
        return Answer(
            failure=Failure.TIMEOUT,
            detail=f"no answer within {timeout:g}s",
            elapsed=time.perf_counter() - started,
        )
    except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as error:
        # ValueError: aiohttp refuses a malformed URL or header before sending anything.
        return Answer(
            failure=Failure.NETWORK, detail=_describe(error), elapsed=time.perf_counter() - started
        )
