"""The HTTP side of `serve`: /readyz, /livez, /status and /metrics, all answered from memory.

Hostile clients are bounded here: idle connections are closed after IDLE_TIMEOUT, at most
`max_connections` are held (the oldest goes first, so a new probe is always taken), the soft
open-files limit is raised to the hard one at start-up, and aiohttp's own error reports (a
malformed request, an accept() that ran out of descriptors) become at most one JSON line a
second instead of a plain-text traceback each.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import math
import resource
import signal
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final, Protocol, cast

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from . import __version__, metrics
from .readiness import Reason, State, Verdict
from .redact import clean
from .settings import ConfigError, Listen

Log = structlog.typing.FilteringBoundLogger

# How long shutdown may wait for probe handlers; they answer from memory, so this is generous.
SHUTDOWN_TIMEOUT: Final = 1.0
# An open connection with no request in progress is closed after this long. Probes and scrapes
# come at most every few seconds, and the kubelet opens a fresh connection for each probe.
IDLE_TIMEOUT: Final = 20.0
# Connections held at once, at most; descriptors are kept in reserve for the poller, the key
# file and the listening socket.
MAX_CONNECTIONS: Final = 4096
RESERVED_FDS: Final = 64
# Pending connections the kernel may queue while the loop is busy (capped by somaxconn).
BACKLOG: Final = 1024
# aiohttp's and asyncio's own error reports: at most one line this often, with a count.
ERROR_LOG_EVERY: Final = 1.0

# /readyz?verbose: each check and the reasons that fail it, in the order they are listed.
CHECKS: Final = (
    ("whoami", {Reason.STARTING, Reason.STALE, Reason.UNAUTHENTICATED, Reason.CLIENT_ERROR}),
    ("api-key", {Reason.KEY_UNAVAILABLE}),
    ("kill-switch", {Reason.KILL_SWITCH}),
    ("access-revoked", {Reason.ACCESS_REVOKED}),
    ("billing", {Reason.BILLING_EXHAUSTED}),
    ("credits", {Reason.CREDITS_LOW}),
)


class Source(metrics.Source, Protocol):
    """What the server reads: the poller, or anything shaped like it."""

    def alive(self) -> bool: ...


SOURCE: Final = web.AppKey("source", Source)
QUIT: Final = web.AppKey("quit", asyncio.Event)
WHOAMI_URL: Final[web.AppKey[str | None]] = web.AppKey("whoami_url")


def _text(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body + "\n", status=status)


async def readyz(request: web.Request) -> web.Response:
    verdict = request.app[SOURCE].verdict()
    status = 200 if verdict.ready else 503
    if "verbose" not in request.query:
        return _text("ok" if verdict.ready else f"not ready: {verdict.reason.value}", status)
    lines = []
    for name, failing in CHECKS:
        if verdict.reason in failing:
            lines.append(f"[-]{name} failed: {verdict.reason.value}: {verdict.detail}".rstrip(": "))
        elif name == "whoami" and verdict.reason is Reason.KEY_UNAVAILABLE:
            # No call is made without a key: whoami has not passed, whatever it said before.
            lines.append("[-]whoami failed: not called while the api key is unavailable")
        elif name == "whoami" and verdict.ready and verdict.detail:
            # Still ready, carried through transient failures: say so, not a plain "ok".
            lines.append(f"[+]whoami ok ({verdict.detail})")
        else:
            lines.append(f"[+]{name} ok")
    lines.append("readyz check passed" if verdict.ready else "readyz check failed")
    return _text("\n".join(lines), status)


async def livez(request: web.Request) -> web.Response:
    # Never depends on the upstream's answer: a restart cannot clear a kill switch.
    if request.app[SOURCE].alive():
        return _text("ok")
    return _text("not alive: the poll loop has stopped or stalled", 503)


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return (
        datetime.fromtimestamp(timestamp, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def status_document(
    state: State, verdict: Verdict, *, whoami_url: str | None = None
) -> dict[str, Any]:
    whoami = state.whoami
    return {
        "ready": verdict.ready,
        "reason": verdict.reason.value,
        "detail": verdict.detail,
        "organizationId": whoami.organization_id if whoami else None,
        "workspaceId": whoami.workspace_id if whoami else None,
        "organizationName": whoami.organization_name if whoami else None,
        "rateLimitTier": whoami.rate_limit_tier if whoami else None,
        "creditBalance": _number(whoami.credit_balance) if whoami else None,
        "killSwitch": state.kill_switch,
        "apiAccessRevoked": state.access_revoked,
        "apiKeyId": whoami.api_key_id if whoami else None,
        # Which key this is about, before an answer of it names it (and after: a rotation
        # shows here at once).
        "keyFingerprint": state.key_fingerprint,
        "minTier": state.min_tier,
        "lastOutcome": state.last_outcome,
        "lastAttemptAt": _iso(state.last_attempt_at),
        "lastSuccessAt": _iso(state.last_success_at),
        "lastRequestId": state.last_request_id,
        "consecutiveFailures": state.consecutive_failures,
        # What is polled and by which build: the first two questions when /status looks wrong.
        # Settings refuse a URL holding credentials, so it can be shown as it is.
        "whoamiUrl": whoami_url,
        "version": __version__,
    }


async def status(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    document = status_document(
        source.snapshot(), source.verdict(), whoami_url=request.app[WHOAMI_URL]
    )
    return web.json_response(document)


async def quitquitquit(request: web.Request) -> web.Response:
    # Answered first, then the server stops: the caller (a Job's main container) sees the 200.
    request.app[QUIT].set()
    return _text("ok: exiting")


def make_app(
    source: Source,
    registry: CollectorRegistry,
    *,
    quit_requested: asyncio.Event | None = None,
    whoami_url: str | None = None,
) -> web.Application:
    """The probe endpoints; with `quit_requested`, also POST /quitquitquit, which sets it.
    `whoami_url` is shown in /status."""
    app = web.Application()
    app[SOURCE] = source
    app[WHOAMI_URL] = whoami_url
    # add_get also answers HEAD.
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    if quit_requested is not None:
        app[QUIT] = quit_requested
        app.router.add_post("/quitquitquit", quitquitquit)
    return app


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


class RateLimited:
    """Lets one report through every `every` seconds and counts the rest."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last = -math.inf
        self.dropped = 0

    def allow(self) -> int | None:
        """None to drop this report; else how many were dropped since the last one let through."""
        now = self._clock()
        if now - self._last < self._every:
            self.dropped += 1
            return None
        self._last, dropped, self.dropped = now, self.dropped, 0
        return dropped


class _JsonErrors(logging.Handler):
    """aiohttp's server logger and asyncio's loop errors, as rate-limited JSON lines.

    The message and the exception are upstream-of-us bytes (a client's request line) and are
    escaped and cut; the traceback is dropped: it is aiohttp's, not a fault of ours to debug.
    """

    def __init__(self, log: Log, limiter: RateLimited) -> None:
        super().__init__(logging.INFO)
        self._log = log
        self._limiter = limiter

    def emit(self, record: logging.LogRecord) -> None:
        dropped = self._limiter.allow()
        if dropped is None:
            return
        error = record.exc_info[1] if record.exc_info else None
        self._log.warning(
            "http error",
            message=clean(record.getMessage(), None, limit=200),
            error=clean(f"{type(error).__name__}: {error}", None) if error else None,
            dropped=dropped,
        )


def _quiet_logger(log: Log, limiter: RateLimited) -> logging.Logger:
    logger = logging.getLogger("layers_sidecar.http")
    logger.handlers = [_JsonErrors(log, limiter)]
    logger.setLevel(logging.INFO)  # aiohttp's debug reports (a TLS hello on the port) dropped
    logger.propagate = False
    return logger


def _loop_errors(log: Log, limiter: RateLimited) -> Callable[..., None]:
    """asyncio's exception handler: one rate-limited JSON line instead of a traceback each
    (accept() out of descriptors would otherwise print one every time it retries)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if limiter.allow() is None:
            return
        error = context.get("exception")
        log.warning(
            "event loop error",
            message=clean(str(context.get("message", "")), None, limit=200),
            error=clean(f"{type(error).__name__}: {error}", None) if error else None,
        )

    return handle


class _BoundedServer(web.Server):
    """Holds at most `limit` connections: a new one closes the oldest, so idle clients can never
    starve a kubelet probe. force_close, because close() only stops a connection's task and
    leaves its socket open; every answer comes from memory in microseconds, so the oldest
    connection is, in practice, an idle one."""

    limit: int = MAX_CONNECTIONS

    def connection_made(self, handler: Any, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if len(self._connections) > self.limit:
            oldest = next(iter(self._connections))
            if oldest is not handler:
                oldest.force_close()


async def start_site(
    app: web.Application,
    listen: Listen,
    log: Log | None = None,
    *,
    setting: str = "--listen",
    ssl_context: ssl.SSLContext | None = None,
) -> web.AppRunner:
    """Starts listening; a port in use or a bad address is a ConfigError naming `setting`."""
    log = log if log is not None else structlog.get_logger("layers-sidecar")
    limiter = RateLimited(ERROR_LOG_EVERY)
    asyncio.get_running_loop().set_exception_handler(_loop_errors(log, limiter))
    open_files = raise_open_files_limit()
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=IDLE_TIMEOUT,
        logger=_quiet_logger(log, limiter),
    )
    await runner.setup()
    # aiohttp has no connection limit of its own; this instance gets one.
    assert runner.server is not None
    runner.server.__class__ = _BoundedServer
    bounded = cast(_BoundedServer, runner.server)
    bounded.limit = max(16, min(MAX_CONNECTIONS, open_files - RESERVED_FDS))
    try:
        await web.TCPSite(
            runner, listen.host, listen.port, backlog=BACKLOG, ssl_context=ssl_context
        ).start()
    except OSError as error:
        await runner.cleanup()
        problem = (
            "address already in use"
            if error.errno == errno.EADDRINUSE
            else (error.strerror or str(error))
        )
        raise ConfigError(setting, f"cannot listen on {listen}: {problem}") from None
    return runner


def bound_address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}"


async def until_signalled(
    log: structlog.typing.FilteringBoundLogger, quit_requested: asyncio.Event | None = None
) -> None:
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
