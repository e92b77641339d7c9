"""One call to GET /v1/whoami, turned into a plain `Answer`. The only place that does HTTP out.

Nothing here decides anything: a status, a bounded body (1 MiB where a switch may be stated, 64
KiB otherwise), the headers that matter and the time taken, or the kind of transport failure, as
the `Answer` that `outcome` owns; `outcome.classify` makes the verdict. Strings here are raw:
`classify` redacts them (aiohttp's own error messages may quote bytes the upstream sent).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Final
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.tracing import Trace
from multidict import CIMultiDict

from .auth import auth_headers
from .encodings import Decoder
from .outcome import BODY_LIMIT, SWITCH_SEARCH_LIMIT, Answer, Failure
from .secret import Secret
from .values import AuthScheme

# The statuses whose body may state a switch (a 200 flag, a 503 KILL_SWITCH): read further.
_SWITCH_STATUSES: Final = frozenset({200, 503})

# Only these reach the verdict or the logs; the rest of the upstream's headers are dropped.
KEPT_HEADERS: Final = (
    "Retry-After",
    "X-Request-Id",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "X-RateLimit-Tier",
)


class _UnreadConnector(aiohttp.TCPConnector):
    """A connector that never reuses a pooled connection holding bytes nobody asked for.

    aiohttp checks for unread bytes when a connection goes back to the pool, not when it is
    taken out: an upstream (or a proxy) that writes one more response while the connection is
    idle would have it read as the answer to the next request, another key's. Taken out here,
    such a connection is closed and the next one tried (or a new one opened).
    """

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while (connection := await super()._get(key, traces)) is not None:
            protocol = connection.protocol
            if protocol is not None and not protocol.should_close:
                return connection
            connection.close()
        return None


def client_session(
    *, connections: int = 1, agent: str = "layers-readiness"
) -> aiohttp.ClientSession:
    """The one way a client session is made, for the poller and the hub alike.

    No cookie jar: nothing the upstream sets carries over to the next call. No pooled connection
    with unread bytes is reused (`_UnreadConnector`). No decompression by aiohttp (unbounded):
    the request asks for `identity`, and a body compressed anyway is decoded, bounded, by
    `read_capped`. No trust_env: `fetch` names the proxy itself (`proxy_for`). One connection for a
    sidecar: there is never more than one request in flight; the hub asks for more.
    """
    return aiohttp.ClientSession(
        connector=_UnreadConnector(limit=connections),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        headers={"User-Agent": agent, "Accept-Encoding": "identity"},
    )


@functools.lru_cache(maxsize=16)
def proxy_for(url: str) -> str | None:
    """The proxy HTTP_PROXY / HTTPS_PROXY name for `url`, or None (none set, or NO_PROXY).

    Read once per URL for the life of the process, whose environment does not change: aiohttp's
    trust_env reads the environment and ~/.netrc again for every call, through the thread pool,
    which was most of the hub's CPU per miss. ~/.netrc is not read at all: the key travels in a
    header, and a netrc entry for the API's host would only add other credentials to the call
    (or, beside `Authorization: Bearer`, make aiohttp refuse it). As with trust_env, only
    http:// proxies are used (credentials in the proxy URL are sent to the proxy).
    """
    parts = urlsplit(url)
    if parts.hostname is None or proxy_bypass(parts.hostname):
        return None
    proxy = getproxies().get(parts.scheme)
    if proxy is None or urlsplit(proxy).scheme != "http":
        return None
    return proxy


async def read_capped(
    response: aiohttp.ClientResponse, limit: int, chunks: list[bytes] | None = None
) -> tuple[bytes, bool]:
    """At most `limit` bytes of the body, decoded (`encodings.Decoder`: gzip or deflate a proxy
    added, a byte-order mark), and whether there was more; an 8 MiB answer, or a decompression
    bomb, must not become 8 MiB of memory. `chunks` receives what has been decoded so far, for
    a body cut short."""
    chunks = [] if chunks is None else chunks
    decoder = Decoder(response.headers.get("Content-Encoding"), limit)
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        decoded = decoder.feed(chunk)
        chunks.append(decoded)
        size += len(decoded)
        if size > limit or decoder.over:
            return b"".join(chunks)[:limit], True
    return b"".join(chunks), False


def body_limit(status: int) -> int:
    """1 MiB where a switch may be stated, 64 KiB for everything else."""
    return SWITCH_SEARCH_LIMIT if status in _SWITCH_STATUSES else BODY_LIMIT


def _describe(error: BaseException) -> str:
    # Raw: aiohttp's parse errors may quote the upstream's bytes; `classify` redacts and cuts.
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}"


async def fetch(
    session: aiohttp.ClientSession,
    url: str,
    key: Secret,
    *,
    scheme: AuthScheme,
    timeout: float,
    max_body: int | None = None,
    keep: Callable[[str], bool] | None = None,
) -> Answer:
    """GET {url} with the key; never raises for anything the network or the upstream does.

    The hub, which passes the answer on unchanged, reads up to `max_body` whatever the status
    and keeps every header `keep` accepts (still looked up without regard to case).
    """
    started = time.perf_counter()
    headers = {"Accept": "application/json", **auth_headers(key, scheme)}
    # A body cut short (a timeout, a reset) may already have stated a switch: what arrived, and
    # the status it came with, go with the failure for `classify` to look at.
    status: int | None = None
    received: list[bytes] = []
    limit = 0
    try:
        async with asyncio.timeout(timeout):
            async with session.get(
                url, headers=headers, allow_redirects=False, proxy=proxy_for(url)
            ) as response:
                status = response.status
                limit = body_limit(response.status) if max_body is None else max_body
                body, too_large = await read_capped(response, limit, received)
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
            status=status,
            body=b"".join(received)[:limit],
            failure=Failure.TIMEOUT,
            detail=f"no answer within {timeout:g}s",
            elapsed=time.perf_counter() - started,
        )
    except (aiohttp.ClientError, ssl.SSLError, OSError, ValueError) as error:
        # ValueError: aiohttp refuses a malformed URL or header before sending anything.
        return Answer(
            status=status,
            body=b"".join(received)[:limit],
            failure=Failure.NETWORK,
            detail=_describe(error),
            elapsed=time.perf_counter() - started,
        )
