"""The agent's probe app: /readyz, /livez, /status and /metrics, all answered from memory.

Handlers read the poller (or anything shaped like it, `Source`) through a typed AppKey; they
never reach the upstream. Served by the shared runtime (`runtime.lifecycle.serving`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.aiohttp import make_aiohttp_handler

from .. import __version__
from ..readiness import Reason, State, Verdict
from ..runtime.http import text
from . import metrics

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


async def readyz(request: web.Request) -> web.Response:
    verdict = request.app[SOURCE].verdict()
    status = 200 if verdict.ready else 503
    if "verbose" not in request.query:
        return text("ok" if verdict.ready else f"not ready: {verdict.reason.value}", status)
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
    return text("\n".join(lines), status)


async def livez(request: web.Request) -> web.Response:
    # Never depends on the upstream's answer: a restart cannot clear a kill switch.
    if request.app[SOURCE].alive():
        return text("ok")
    return text("not alive: the poll loop has stopped or stalled", 503)


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
    return text("ok: exiting")


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
