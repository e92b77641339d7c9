"""The HTTP side of `serve`: /readyz, /livez, /status and /metrics, all answered from memory."""

from __future__ import annotations

import asyncio
import errno
import signal
import ssl
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from . import metrics
from .readiness import Reason, State, Verdict
from .settings import ConfigError, Listen

# How long shutdown may wait for probe handlers; they answer from memory, so this is generous.
SHUTDOWN_TIMEOUT: Final = 1.0

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


def status_document(state: State, verdict: Verdict) -> dict[str, Any]:
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
        "minTier": state.min_tier,
        "lastOutcome": state.last_outcome,
        "lastAttemptAt": _iso(state.last_attempt_at),
        "lastSuccessAt": _iso(state.last_success_at),
        "lastRequestId": state.last_request_id,
        "consecutiveFailures": state.consecutive_failures,
    }


async def status(request: web.Request) -> web.Response:
    source = request.app[SOURCE]
    return web.json_response(status_document(source.snapshot(), source.verdict()))


def make_app(source: Source, registry: CollectorRegistry) -> web.Application:
    app = web.Application()
    app[SOURCE] = source
    # add_get also answers HEAD.
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/livez", livez)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app


async def start_site(
    app: web.Application, listen: Listen, *, ssl_context: ssl.SSLContext | None = None
) -> web.AppRunner:
    """Starts listening; a port in use or a bad address is a ConfigError naming --listen."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, listen.host, listen.port, ssl_context=ssl_context).start()
    except OSError as error:
        await runner.cleanup()
        problem = (
            "address already in use"
            if error.errno == errno.EADDRINUSE
            else (error.strerror or str(error))
        )
        raise ConfigError("--listen", f"cannot listen on {listen}: {problem}") from None
    return runner


def bound_address(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"{host}:{port}"


async def until_signalled(log: structlog.typing.FilteringBoundLogger) -> None:
    """Returns on SIGTERM or SIGINT; the original handlers come back afterwards."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    log.info("stopping")
