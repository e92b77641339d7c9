"""What the emulator answers: the scenario (who the key is, the switches, a failure mode) and
the rules for changing it. Plain data and checks, no HTTP: the CLI reads a scenario file and
lists the failure modes through this module without loading the emulator's server."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Final

FAILURES: Final = {
    # mode: (status, error.code, error.message)
    "unauthenticated": (401, "UNAUTHENTICATED", "Missing, malformed, or unrecognized key."),
    "billing_exhausted": (
        402,
        "BILLING_EXHAUSTED",
        "Your plan does not include partner API access.",
    ),
    "rate_limited": (429, "RATE_LIMITED", "Too many requests."),
    "server_error": (500, "INTERNAL", "Internal error."),
    "kill_switch": (503, "KILL_SWITCH", "Key has been disabled by Layers."),
    "unavailable": (503, "UNAVAILABLE", "Service temporarily unavailable."),
    "not_found": (404, "NOT_FOUND", "No such route."),
    # Transport-level faults, for testing clients: no error body.
    "redirect": (302, "", ""),
    "reset": (200, "", ""),
    "truncated": (200, "", ""),
    "garbage": (200, "", ""),
    "huge": (200, "", ""),
}


@dataclass
class Scenario:
    organizationId: str = "2481fa5c-a404-44ed-a561-565392499abc"
    workspaceId: str = "2481fa5c-a404-44ed-a561-565392499abc"
    organizationName: str = "Acme Growth"
    rateLimitTier: str = "standard"
    creditBalance: float = 2540
    killSwitch: bool = False
    apiAccessRevoked: bool = False
    # None, or a key of FAILURES: what every whoami answers instead of the 200.
    failure: str | None = None
    # Seconds, for failure "rate_limited"; None sends no Retry-After header.
    retryAfter: float | None = 30
    # Seconds to wait before answering anything (a slow upstream).
    delay: float = 0
    # details.minTier of a 402.
    minTier: str = "partner"
    # Key ids (the <key_id> part) that answer 401 "API key has been revoked."
    revokedKeyIds: list[str] = field(default_factory=list)
    # The per-minute budget behind the X-RateLimit-* headers; past it, 429.
    rateLimitPerMinute: int = 600
    # When set, the 200 body verbatim (any JSON), for testing clients on odd answers.
    body: Any = None


_TYPES: Final = {
    "organizationId": str,
    "workspaceId": str,
    "organizationName": str,
    "rateLimitTier": str,
    "creditBalance": (int, float),
    "killSwitch": bool,
    "apiAccessRevoked": bool,
    "failure": (str, type(None)),
    "retryAfter": (int, float, type(None)),
    "delay": (int, float),
    "minTier": str,
    "revokedKeyIds": list,
    "rateLimitPerMinute": int,
    "body": object,
}


def updated(scenario: Scenario, patch: object) -> Scenario:
    """The scenario with `patch` applied; ValueError names what is wrong with the patch."""
    if not isinstance(patch, dict):
        raise ValueError("the scenario patch must be a JSON object")
    known = {f.name for f in fields(Scenario)}
    for name, value in patch.items():
        if name not in known:
            raise ValueError(f"unknown scenario field {name!r}; known: {', '.join(sorted(known))}")
        kind = _TYPES[name]
        if isinstance(value, bool) and kind in ((int, float), int, (int, float, type(None))):
            raise ValueError(f"{name} must be a number")
        if not isinstance(value, kind):  # type: ignore[arg-type]
            raise ValueError(f"{name} has the wrong type ({type(value).__name__})")
    failure = patch.get("failure", scenario.failure)
    if failure is not None and failure not in FAILURES:
        raise ValueError(f"failure must be null or one of {', '.join(FAILURES)}")
    for name in ("delay", "retryAfter", "creditBalance"):
        value = patch.get(name)
        if isinstance(value, int | float) and not math.isfinite(value):
            raise ValueError(f"{name} must be finite")
    if patch.get("delay", 0) < 0 or (patch.get("retryAfter") or 0) < 0:
        raise ValueError("delay and retryAfter cannot be negative")
    merged = {**asdict(scenario), **patch}
    return Scenario(**merged)


def load_scenario(text: str) -> Scenario:
    """A scenario file's JSON (a patch over the defaults); ValueError when it is not one."""
    return updated(Scenario(), json.loads(text))
