"""The HTTP side of `hub`: GET /v1/whoami answered from the cache, /readyz, /livez, /metrics.

The caller's key is read here and handed to the `Hub`; the answer goes back with the headers
that keep every cache between hub and sidecar from sharing it.
"""

from __future__ import annotations

import math
import ssl
from collections.abc import Mapping
from typing import Final

import structlog
from aiohttp import web

from . import __version__
from .cache import Stored
from .hub import Busy, Hub, hub_error
from .server import bound_address, start_site, until_signalled
from .settings import AuthScheme, ConfigError, Settings

Log = structlog.typing.FilteringBoundLogger

# Longer than any real key, short enough that a junk header costs nothing to hash.
MAX_KEY_LENGTH: Final = 512
# No cache between hub and sidecar may share an answer given to an authorised request.
PRIVATE: Final = {"Cache-Control": "no-store", "Vary": "X-Api-Key, Authorization"}
_KEY_CHARS: Final = frozenset(chr(c) for c in range(0x21, 0x7F))


def presented_key(headers: Mapping[str, str]) -> tuple[str | None, AuthScheme]:
    """The caller's key and how it came, as Layers reads it: X-Api-Key, else a Bearer token.

    None for a missing key or one that cannot be a key (too long, not printable ASCII): those
    are refused without an upstream call.
    """
    scheme = AuthScheme.X_API_KEY
    key = headers.get("X-Api-Key")
    if key is None:
        kind, _, token = headers.get("Authorization", "").partition(" ")
        if kind.lower() != "bearer":
            return None, scheme
        key, scheme = token, AuthScheme.BEARER
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not set(key) <= _KEY_CHARS:
        return None, scheme
    return key, scheme


HUB: Final = web.AppKey("hub", Hub)


def _respond(stored_answer: Stored, how: str, age: int) -> web.Response:
    headers = dict(stored_answer.headers)
    headers.update(PRIVATE)
    headers["Age"] = str(age)
    headers["X-Layers-Hub"] = "error" if stored_answer.hub_error else how
    return web.Response(status=stored_answer.status, body=stored_answer.body, headers=headers)


async def whoami(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    key, scheme = presented_key(request.headers)
    if key is None:
        hub.metrics.count("rejected")
        return _respond(hub_error(401, "UNAUTHENTICATED", "Missing API key."), "error", 0)
    try:
        entry, how = await hub.answer(key, scheme)
    except Busy as busy:
        hub.metrics.count("rejected")
        hub.busy(busy.retry_after)
        seconds = str(max(1, math.ceil(busy.retry_after)))
        refusal = hub_error(
            503, "HUB_BUSY", "The hub's upstream budget is spent.", **{"Retry-After": seconds}
        )
        return _respond(refusal, "error", 0)
    hub.metrics.count(how)
    return _respond(entry.answer, how, entry.age(hub.now()))


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body + "\n", status=status)


async def readyz(request: web.Request) -> web.Response:
    # Whether the hub serves, never what Layers said: a sidecar reads that from its own answer.
    if request.app[HUB].stopping:
        return _text("not ready: stopping", 503)
    return _text("ok")


async def livez(request: web.Request) -> web.Response:
    return _text("ok")


def make_app(hub: Hub) -> web.Application:
    app = web.Application()
    app[HUB] = hub
    # add_get also answers HEAD.
    app.router.add_get("/v1/whoami", whoami)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/metrics", hub.metrics.handler())
    return app


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server side of HTTPS, or None for plain HTTP; a bad file is a one-line ConfigError."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    except (OSError, ssl.SSLError) as error:
        problem = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
        raise ConfigError(
            "--tls-cert-file",
            f"cannot use {settings.tls_cert_file} with {settings.tls_key_file}: {problem}",
        ) from None
    return context


async def run_hub(settings: Settings, log: Log) -> int:
    """Serves until SIGTERM/SIGINT."""
    context = tls_context(settings)
    async with Hub(settings, log=log) as hub:
        runner = await start_site(make_app(hub), settings.listen, log, ssl_context=context)
        log.info(
            "hub listening",
            address=bound_address(runner),
            tls=context is not None,
            whoamiUrl=settings.whoami_url,
            ttl=settings.ttl,
            maxKeys=settings.max_keys,
            maxUpstreamRate=settings.max_upstream_rate,
            version=__version__,
        )
        try:
            await until_signalled(log)
        finally:
            hub.stopping = True
            await runner.cleanup()
    return 0
