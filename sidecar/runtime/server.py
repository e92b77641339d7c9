"""The bounded HTTP server every role listens with, and its bound address as a value.

Hostile clients are bounded here: idle connections are closed after IDLE_TIMEOUT, at most
`max_connections` are held (the oldest goes first, so a new probe is always taken), the soft
open-files limit is raised to the hard one at start-up, and aiohttp's own error reports go
through `errors.py` (at most one JSON line a second).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import socket
import ssl
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from ..options import ConfigError
from ..throttle import Throttle
from ..values import Listen
from .errors import ERROR_LOG_EVERY, loop_errors, server_logger

Log = structlog.typing.FilteringBoundLogger

# How long shutdown may wait for handlers; they answer from memory, so this is generous.
SHUTDOWN_TIMEOUT: Final = 1.0
# An open connection with no request in progress is closed after this long. Probes and scrapes
# come at most every few seconds, and the kubelet opens a fresh connection for each probe.
IDLE_TIMEOUT: Final = 20.0
# Connections held at once, at most, and pending connections the kernel may queue while the
# loop is busy (capped by somaxconn); both shrink to fit the open-files limit (`fd_budget`).
MAX_CONNECTIONS: Final = 4096
BACKLOG: Final = 1024
# Descriptors kept for everything but connections: the listening socket, the event loop's own,
# the log, the key file, a TLS file, the interpreter's; beyond those open at start-up.
RESERVED_FDS: Final = 32
# The share of the open-files limit a role's outgoing connections may take (the hub's upstream
# pool, `client_connections`); the server leaves it free.
CLIENT_SHARE: Final = 8
MAX_CLIENT_CONNECTIONS: Final = 256


@dataclass(frozen=True)
class Address:
    """Where a site listens, once bound (port 0 becomes the port the kernel chose)."""

    host: str
    port: int

    @classmethod
    def of(cls, runner: web.BaseRunner) -> Address:
        host, port = runner.addresses[0][:2]
        return cls(str(host), int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self}"


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard one, as Go programs do; returns the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass  # keep the soft limit; connections are bounded below it anyway
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def client_connections(cap: int = MAX_CLIENT_CONNECTIONS) -> int:
    """How many outgoing connections a role may hold: an eighth of the open-files limit, at
    most `cap`; `listening` leaves that many descriptors free."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(1, min(cap, soft // CLIENT_SHARE))


def _open_now() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


@dataclass(frozen=True)
class FdBudget:
    """Connections held at once (`limit`), and how many asyncio accepts in one go (`batch`,
    the backlog it is given) before any of them is evicted; both fit in the limit."""

    limit: int
    batch: int


# Accepted connections reach the eviction a few loop iterations after accept() (a task, then
# connection_made), and an aborted one closes an iteration later: this many batches in flight.
_BATCHES_IN_FLIGHT: Final = 8


def fd_budget(open_files: int, *, open_now: int, clients: int) -> FdBudget:
    """What fits in `open_files` descriptors with `open_now` in use and `clients` kept free:
    the cap plus the batches in flight plus the reserve, so that a burst of connections never
    makes accept() fail with EMFILE (asyncio then stops accepting for a second: probes time
    out)."""
    free = max(0, open_files - open_now - clients - RESERVED_FDS)
    batch = max(2, min(BACKLOG, free // (4 * _BATCHES_IN_FLIGHT)))
    limit = max(8, min(MAX_CONNECTIONS, free - _BATCHES_IN_FLIGHT * batch))
    return FdBudget(limit=limit, batch=batch)


class BoundedServer(web.Server):
    """Holds at most `limit` connections: a new one closes the oldest.

    aiohttp leaves a connection cap to the application
    (https://github.com/aio-libs/aiohttp/issues/675), and uvicorn's and gunicorn's policy,
    refusing new connections past the cap, would let idle clients lock the kubelet's probes out;
    evicting the oldest always takes the new probe. Every answer comes from memory in
    microseconds, so the oldest connection is, in practice, an idle one. The table is our own,
    kept from the public connection_made/connection_lost hooks (tested with aiohttp 3.13 and
    3.14). The evicted transport is aborted, not closed: its descriptor is released at once
    (a graceful close would wait for buffered writes, or a TLS close_notify, while the burst
    goes on), then force_close, because close() only stops a connection's task.
    """

    def __init__(self, *args: Any, limit: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit = limit
        # Insertion order is age: the first is the oldest connection still open.
        self._open: OrderedDict[RequestHandler, None] = OrderedDict()

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._open[handler] = None
        while len(self._open) > self.limit:
            # Out of the table now, not at connection_lost (an iteration later): every other
            # connection of this accept batch must evict another one, not this one again.
            oldest, _ = self._open.popitem(last=False)
            if oldest is handler:
                self._open[handler] = None
                break
            if oldest.transport is not None:
                oldest.transport.abort()
            oldest.force_close()

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        super().connection_lost(handler, exc)
        self._open.pop(handler, None)

    @property
    def open_connections(self) -> int:
        return len(self._open)


class BoundedRunner(web.AppRunner):
    """An AppRunner whose server is a BoundedServer. `_make_server` is the runner's hook for
    the server it runs (abstract in BaseRunner); the app's start-up is aiohttp's own."""

    def __init__(self, app: web.Application, *, limit: int, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._limit = limit
        self._handler_kwargs = kwargs

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()
        kwargs = {k: v for k, v in self._handler_kwargs.items() if k != "shutdown_timeout"}
        return BoundedServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            limit=self._limit,
            **kwargs,
        )


def _deepen_backlog(site: web.TCPSite) -> None:
    """The kernel's queue back to BACKLOG: asyncio took the small backlog as its accept batch
    (kept), and also as the queue length, which a burst would fill, dropping a probe's SYN
    (retried only after a second). aiohttp keeps the asyncio server as `_server`; without it,
    the queue stays at the batch size."""
    server = getattr(site, "_server", None)
    for wrapped in getattr(server, "sockets", ()):
        # asyncio hands out a wrapper without listen(): a second socket object on the same
        # descriptor, detached so that it never closes it.
        same = socket.socket(wrapped.family, wrapped.type, fileno=wrapped.fileno())
        try:
            with contextlib.suppress(OSError):
                same.listen(BACKLOG)
        finally:
            same.detach()


@asynccontextmanager
async def listening(
    app: web.Application,
    listen: Listen,
    log: Log,
    *,
    setting: str = "--listen",
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[web.AppRunner]:
    """The app's site, started, and cleaned up on exit (the app's cleanup_ctx then closes what
    it owns); a port in use or a bad address is a ConfigError naming `setting`."""
    throttle = Throttle(ERROR_LOG_EVERY)
    asyncio.get_running_loop().set_exception_handler(loop_errors(log, throttle))
    open_files = raise_open_files_limit()
    budget = fd_budget(open_files, open_now=_open_now(), clients=client_connections())
    runner = BoundedRunner(
        app,
        limit=budget.limit,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=IDLE_TIMEOUT,
        logger=server_logger(log, throttle),
    )
    await runner.setup()
    try:
        try:
            site = web.TCPSite(
                runner, listen.host, listen.port, backlog=budget.batch, ssl_context=ssl_context
            )
            await site.start()
        except OSError as error:
            problem = (
                "address already in use"
                if error.errno == errno.EADDRINUSE
                else (error.strerror or str(error))
            )
            raise ConfigError(setting, f"cannot listen on {listen}: {problem}") from None
        _deepen_backlog(site)
        yield runner
    finally:
        await runner.cleanup()
