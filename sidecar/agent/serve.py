"""`serve`: the agent's long-running command. The wiring, not the logic.

A Poller that schedules and fetches; its observers, the journal (logs), the metrics and the
optional ready-file, each receiving the loop's events; and the probe app reading the poller's
state. The app owns the poller through `cleanup_ctx` (entered when the runner starts, stopped
and closed when it cleans up); the shared runtime's `serving` does the rest. Imported only by
the commands that serve, so that `check` never loads the server or prometheus-client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from .. import __version__
from ..runtime.lifecycle import serving
from ..runtime.server import Address
from ..settings import Settings
from .journal import Journal
from .keys import key_source
from .metrics import Metrics
from .poller import Observer, Poller
from .probes import make_app
from .readyfile import ReadyFile

Log = structlog.typing.FilteringBoundLogger


def owned(
    poller: Poller, ready_file: ReadyFile | None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """The app's hold on the poller: its session opens with the runner and closes with it; the
    loop is cancelled before, and the ready file removed after."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        async with poller:
            yield
            await poller.stop()
        if ready_file is not None:
            ready_file.close()

    return context


async def serve(settings: Settings, log: Log, announce: Callable[[str], None] | None = None) -> int:
    """Polls and serves until SIGTERM/SIGINT (or POST /quitquitquit when enabled); `announce`
    gets the bound URL once listening."""
    metrics = Metrics()
    ready_file = ReadyFile(settings.ready_file, log) if settings.ready_file else None
    observers: list[Observer] = [Journal(log), metrics.observe]
    if ready_file is not None:
        observers.append(ready_file)
    quit_requested = asyncio.Event() if settings.quitquitquit else None
    poller = Poller(settings, key_source(settings), log=log, observers=observers)
    metrics.watch(poller)
    app = make_app(
        poller, metrics.registry, quit_requested=quit_requested, whoami_url=settings.whoami_url
    )
    app.cleanup_ctx.append(owned(poller, ready_file))
    optional = {"readyFile": str(settings.ready_file)} if settings.ready_file else {}

    def started(address: Address) -> None:
        if announce is not None:
            announce(address.url())
        poller.start()

    return await serving(
        app,
        settings.listen,
        log,
        "listening",
        context=lambda address: {
            "address": str(address),
            "whoamiUrl": settings.whoami_url,
            "interval": settings.interval,
            "staleAfter": settings.stale_after,
            "quitquitquit": settings.quitquitquit,
            "version": __version__,
            **optional,
        },
        quit_requested=quit_requested,
        started=started,
    )
