"""A local Layers API emulator: GET /v1/whoami as the upstream documents it, and a control API.

For demos and for users' own CI. The scenario (who the key is, the switches, a failure mode) is
changed at run time through `/_emulator/*`; see README.md, "The emulator".
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import socket
import struct
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import structlog
from aiohttp import web

from ..auth import presented_key

# What the emulator answers is described in `scenario` (no HTTP there, so the CLI can read a
# scenario file and list the failure modes without loading a server).
from .scenario import FAILURES, Scenario, updated

API_VERSION: Final = "v1"
# lp_<env>_<key_id>_<secret>, as the upstream documents its keys.
KEY_FORMAT: Final = re.compile(r"^lp_([a-z]+)_([A-Za-z0-9]+)_([A-Za-z0-9]+)$")
HUGE_BODY_BYTES: Final = 8 * 1024 * 1024
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid() -> str:
    """A ULID: 48 bits of milliseconds and 80 random bits, in Crockford base32."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def api_key_id(key_id: str) -> str:
    """A stable public UUID per key id, as Layers gives every key one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"layers-emulator:{key_id}"))


@dataclass
class Emulator:
    scenario: Scenario = field(default_factory=Scenario)
    initial: Scenario = field(default_factory=Scenario)
    whoami_requests: int = 0
    last_key_id: str | None = None
    last_auth: str | None = None
    window_start: float = field(default_factory=time.monotonic)
    window_count: int = 0

    def reset(self) -> None:
        self.scenario = updated(self.initial, {})
        self.whoami_requests = 0
        self.last_key_id = self.last_auth = None
        self.window_start, self.window_count = time.monotonic(), 0

    def stats(self) -> dict[str, Any]:
        return {
            "whoamiRequests": self.whoami_requests,
            "lastKeyId": self.last_key_id,
            "lastAuthScheme": self.last_auth,
        }

    def rate_limit(self) -> tuple[dict[str, str], bool]:
        """The X-RateLimit-* headers of one more request in this minute, and whether it is over."""
        now = time.monotonic()
        if now - self.window_start >= 60:
            self.window_start, self.window_count = now, 0
        self.window_count += 1
        limit = self.scenario.rateLimitPerMinute
        reset = max(1, math.ceil(self.window_start + 60 - now))
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(max(0, limit - self.window_count)),
            "X-RateLimit-Reset": str(reset),
            "X-RateLimit-Endpoint-Class": "read",
            "X-RateLimit-Tier": self.scenario.rateLimitTier,
        }
        return headers, self.window_count > limit


EMULATOR: Final = web.AppKey("emulator", Emulator)
LOG: Final = web.AppKey("log", structlog.typing.FilteringBoundLogger)


def _error(
    status: int, code: str, message: str, headers: dict[str, str], details: Any = None
) -> web.Response:
    error: dict[str, Any] = {"code": code, "message": message, "requestId": headers["X-Request-Id"]}
    if details is not None:
        error["details"] = details
    return web.json_response({"error": error}, status=status, headers=headers)


async def _broken(request: web.Request, mode: str, headers: dict[str, str]) -> web.StreamResponse:
    """Answers that break in transit: a reset or a truncated body."""
    response = web.StreamResponse(status=200, headers={**headers, "Content-Length": "4096"})
    response.content_type = "application/json"
    await response.prepare(request)
    await response.write(b'{"organizationId": "2481fa5c-a404-44ed-a561-5653')
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if mode == "reset" and sock is not None:
            # Linger 0: close() sends a TCP RST instead of a FIN.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.close()
    return response


async def whoami(request: web.Request) -> web.StreamResponse:
    emulator, log = request.app[EMULATOR], request.app[LOG]
    emulator.whoami_requests += 1
    scenario = emulator.scenario
    headers = {"X-Request-Id": f"req_{ulid()}", "X-Layers-Api-Version": API_VERSION}
    if scenario.delay:
        await asyncio.sleep(scenario.delay)

    key, scheme = presented_key(request.headers)
    how = None if scheme is None else scheme.value
    match = KEY_FORMAT.match(key or "")
    emulator.last_auth = how
    if key is None:
        return _error(401, "UNAUTHENTICATED", "Missing API key.", headers)
    if match is None:
        # The answer is the upstream's, word for word; the hint is for whoever runs the emulator.
        log.warning("malformed api key", hint="the emulator accepts lp_<env>_<key_id>_<secret>")
        return _error(401, "UNAUTHENTICATED", "Malformed API key.", headers)
    key_id = match.group(2)
    emulator.last_key_id = key_id
    log.debug("whoami", keyId=key_id, auth=how, failure=scenario.failure)
    if key_id in scenario.revokedKeyIds:
        return _error(401, "UNAUTHENTICATED", "API key has been revoked.", headers)

    limits, over = emulator.rate_limit()
    headers.update(limits)
    failure = scenario.failure
    if over and failure is None:
        failure = "rate_limited"
        headers["Retry-After"] = limits["X-RateLimit-Reset"]
    elif failure == "rate_limited" and scenario.retryAfter is not None:
        headers["Retry-After"] = f"{scenario.retryAfter:g}"

    if failure in ("reset", "truncated"):
        return await _broken(request, failure, headers)
    if failure == "garbage":
        return web.Response(body=os.urandom(512), content_type="application/json", headers=headers)
    if failure == "huge":
        filler = b'{"padding": "' + b"x" * HUGE_BODY_BYTES + b'"}'
        return web.Response(body=filler, content_type="application/json", headers=headers)
    if failure == "redirect":
        headers["Location"] = "http://elsewhere.invalid/v1/whoami"
        return web.Response(status=302, headers=headers)
    if failure is not None:
        status, code, message = FAILURES[failure]
        details = {"minTier": scenario.minTier} if code == "BILLING_EXHAUSTED" else None
        return _error(status, code, message, headers, details)

    if scenario.body is not None:
        return web.json_response(scenario.body, headers=headers)
    return web.json_response(
        {
            "organizationId": scenario.organizationId,
            "workspaceId": scenario.workspaceId,
            "organizationName": scenario.organizationName,
            "scopes": [],
            "rateLimitTier": scenario.rateLimitTier,
            "killSwitch": scenario.killSwitch,
            "apiAccessRevoked": scenario.apiAccessRevoked,
            "apiKeyId": api_key_id(key_id),
            "creditBalance": scenario.creditBalance,
        },
        headers=headers,
    )


async def get_scenario(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[EMULATOR].scenario))


async def set_scenario(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    try:
        patch = json.loads(await request.read())
    except ValueError:  # not JSON, or not UTF-8: say what is expected, not the parser's words
        example = '{"killSwitch": true}'
        return web.json_response(
            {"error": f"the body must be a JSON object of scenario fields, e.g. {example}"},
            status=400,
        )
    try:
        emulator.scenario = updated(emulator.scenario, patch)
    except ValueError as error:
        return web.json_response({"error": str(error)}, status=400)
    request.app[LOG].info("scenario changed", **{k: v for k, v in patch.items() if k != "body"})
    return web.json_response(asdict(emulator.scenario))


async def reset(request: web.Request) -> web.Response:
    emulator = request.app[EMULATOR]
    counted = emulator.whoami_requests
    emulator.reset()
    # Logged like every other scenario change: a log that shows the kill switch engaged must
    # also show why it is gone. The count is the one the reset zeroes.
    request.app[LOG].info("scenario reset", whoamiRequestsBefore=counted)
    return web.json_response(asdict(emulator.scenario))


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[EMULATOR].stats())


def make_app(
    log: structlog.typing.FilteringBoundLogger, initial: Scenario | None = None
) -> web.Application:
    app = web.Application()
    start = initial or Scenario()
    app[EMULATOR] = Emulator(scenario=updated(start, {}), initial=start)
    app[LOG] = log
    app.router.add_get("/v1/whoami", whoami)
    app.router.add_get("/_emulator/scenario", get_scenario)
    app.router.add_post("/_emulator/scenario", set_scenario)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_get("/_emulator/stats", stats)
    return app
