"""One lifecycle for every server: start the site, log once, wait for a signal, clean up."""

from __future__ import annotations

import asyncio
import signal
import ssl
from collections.abc import Callable

import structlog
from aiohttp import web

from ..values import Listen
from .server import Address, listening

Log = structlog.typing.FilteringBoundLogger


async def until_signalled(log: Log, quit_requested: asyncio.Event | None = None) -> None:
    """Returns on SIGTERM or SIGINT, or when `quit_requested` is set (POST /quitquitquit); the
    original signal handlers come back afterwards."""
    loop = asyncio.get_running_loop()
    stop = quit_requested or asyncio.Event()
    signalled: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        signalled.append(sig.name)
        stop.set()

    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("stopping", cause=signalled[0] if signalled else "POST /quitquitquit")


async def serving(
    app: web.Application,
    listen: Listen,
    log: Log,
    event: str,
    *,
    context: Callable[[Address], dict[str, object]] = lambda address: {"address": str(address)},
    ssl_context: ssl.SSLContext | None = None,
    setting: str = "--listen",
    quit_requested: asyncio.Event | None = None,
    started: Callable[[Address], None] | None = None,
) -> int:
    """Serves `app` until SIGTERM/SIGINT (or `quit_requested`); returns the exit code, 0.

    Logs `event` once, with `context(address)`, when listening; `started` then gets the
    address (the demo prints its banner there).
    """
    async with listening(app, listen, log, setting=setting, ssl_context=ssl_context) as runner:
        address = Address.of(runner)
        log.info(event, **context(address))
        if started is not None:
            started(address)
        await until_signalled(log, quit_requested)
    return 0
