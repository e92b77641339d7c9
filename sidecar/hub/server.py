"""The hub's HTTP edge and entry point: GET /v1/whoami answered from the cache, /readyz, /livez,
/metrics; `run_hub` serves it on the shared runtime.

The caller's key is read here and handed to the `Hub`; the answer goes back with the headers
that keep every cache between hub and sidecar from sharing it. Wired like `serve`: the app owns
the Hub through `cleanup_ctx`, and the handlers receive the hub and the request counter through
typed AppKeys.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Final

import structlog
from aiohttp import web

from .. import __version__
from ..auth import presented_key
from ..runtime.http import text
from ..runtime.lifecycle import serving
from ..runtime.tls import server_context
from ..settings import AuthScheme, Settings
from .cache import Stored
from .metrics import HubMetrics
from .upstream import Busy, Hub, hub_error

Log = structlog.typing.FilteringBoundLogger

# Longer than any real key, short enough that a junk header costs nothing to hash.
MAX_KEY_LENGTH: Final = 512
# No cache between hub and sidecar may share an answer given to an authorised request.
PRIVATE: Final = {"Cache-Control": "no-store", "Vary": "X-Api-Key, Authorization"}


def _printable_ascii(text: str) -> bool:
    """Only characters 0x21-0x7E: ASCII, printable (no controls, no DEL) and no space, in C."""
    return text.isascii() and text.isprintable() and " " not in text


def usable_key(headers: Mapping[str, str]) -> tuple[str | None, AuthScheme]:
    """The caller's key and how it came (`auth.presented_key`), stripped.

    None for a missing key or one that cannot be a key (too long, not printable ASCII): those
    are refused without an upstream call.
    """
    key, scheme = presented_key(headers)
    scheme = scheme or AuthScheme.X_API_KEY
    key = None if key is None else key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not _printable_ascii(key):
        return None, scheme
    return key, scheme


HUB: Final = web.AppKey("hub", Hub)
# Counts one answered request by how: hit, miss, coalesced or rejected.
COUNT: Final[web.AppKey[Callable[[str], None]]] = web.AppKey("count")


def _respond(stored_answer: Stored, how: str, age: int) -> web.Response:
    headers = dict(stored_answer.headers)
    headers.update(PRIVATE)
    headers["Age"] = str(age)
    headers["X-Layers-Hub"] = "error" if stored_answer.hub_error else how
    return web.Response(status=stored_answer.status, body=stored_answer.body, headers=headers)


async def whoami(request: web.Request) -> web.Response:
    hub, count = request.app[HUB], request.app[COUNT]
    key, scheme = usable_key(request.headers)
    if key is None:
        count("rejected")
        return _respond(hub_error(401, "UNAUTHENTICATED", "Missing API key."), "error", 0)
    try:
        entry, how = await hub.answer(key, scheme)
    except Busy as busy:
        count("rejected")
        seconds = str(max(1, math.ceil(busy.retry_after)))
        refusal = hub_error(
            503, "HUB_BUSY", "The hub's upstream budget is spent.", **{"Retry-After": seconds}
        )
        return _respond(refusal, "error", 0)
    count(how)
    return _respond(entry.answer, how, entry.age(hub.now()))


async def readyz(request: web.Request) -> web.Response:
    # Whether the hub serves, never what Layers said: a sidecar reads that from its own answer.
    # While it stops, the listener is already closed: a probe then gets no answer at all.
    return text("ok")


async def livez(request: web.Request) -> web.Response:
    return text("ok")


def owned(hub: Hub) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's hold on the hub: its client session opens with the runner and closes with it,
    in-flight upstream calls cancelled."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with hub:
            yield

    return context


def make_app(hub: Hub, metrics: HubMetrics) -> web.Application:
    app = web.Application()
    app[HUB] = hub
    app[COUNT] = metrics.count
    app.cleanup_ctx.append(owned(hub))
    # add_get also answers HEAD.
    app.router.add_get("/v1/whoami", whoami)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", metrics.handler())
    return app


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server side of HTTPS, or None for plain HTTP; a bad file is a one-line ConfigError."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    return server_context(settings.tls_cert_file, settings.tls_key_file)


async def run_hub(settings: Settings, log: Log) -> int:
    """Serves until SIGTERM/SIGINT."""
    context = tls_context(settings)
    metrics = HubMetrics()
    hub = Hub(settings, log=log, on_upstream=metrics.observe_upstream)
    metrics.watch(hub)
    return await serving(
        make_app(hub, metrics),
        settings.listen,
        log,
        "hub listening",
        context=lambda address: {
            "address": str(address),
            "tls": context is not None,
            "whoamiUrl": settings.whoami_url,
            "ttl": settings.ttl,
            "maxKeys": settings.max_keys,
            "maxUpstreamRate": settings.max_upstream_rate,
            "version": __version__,
        },
        ssl_context=context,
    )
