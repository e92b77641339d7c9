"""Answer → Result: the outcome table of SPEC.md as one pure function.

Branches on the HTTP status and `error.code`, never on `error.message`. Never raises: whatever
bytes arrive, the caller gets an outcome.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final


class Failure(StrEnum):
    TIMEOUT = "timeout"
    NETWORK = "network_error"


@dataclass(frozen=True)
class Answer:
    """What one whoami attempt produced: an HTTP answer, or a transport failure."""

    status: int | None = None
    body: bytes = b""
    too_large: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    failure: Failure | None = None
    detail: str = ""


class Outcome(StrEnum):
    OK = "ok"
    KILL_SWITCH = "kill_switch"
    ACCESS_REVOKED = "access_revoked"
    UNAUTHENTICATED = "unauthenticated"
    BILLING_EXHAUSTED = "billing_exhausted"
    CLIENT_ERROR = "client_error"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    TIMEOUT = "timeout"
    NETWORK_ERROR = "network_error"
    INVALID_RESPONSE = "invalid_response"

    @property
    def hard_stop(self) -> bool:
        """Not ready at once, with no quick retries: only a human or Layers clears these."""
        return self in _HARD_STOPS

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT


_HARD_STOPS: Final = frozenset(
    {
        Outcome.KILL_SWITCH,
        Outcome.ACCESS_REVOKED,
        Outcome.UNAUTHENTICATED,
        Outcome.BILLING_EXHAUSTED,
        Outcome.CLIENT_ERROR,
    }
)
_TRANSIENT: Final = frozenset(
    {
        Outcome.RATE_LIMITED,
        Outcome.SERVER_ERROR,
        Outcome.TIMEOUT,
        Outcome.NETWORK_ERROR,
        Outcome.INVALID_RESPONSE,
    }
)

# Reset values above this are Unix times; below, seconds from now.
_UNIX_TIME_FLOOR: Final = 1e9

KNOWN_TIERS: Final = ("standard", "pilot", "partner", "internal")


@dataclass(frozen=True)
class Whoami:
    organization_id: str
    workspace_id: str
    organization_name: str
    rate_limit_tier: str
    kill_switch: bool
    api_access_revoked: bool
    api_key_id: str
    credit_balance: float


_FIELDS: Final = {
    "organizationId": str,
    "workspaceId": str,
    "organizationName": str,
    "rateLimitTier": str,
    "killSwitch": bool,
    "apiAccessRevoked": bool,
    "apiKeyId": str,
    "creditBalance": float,
}


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    status: int | None = None
    whoami: Whoami | None = None
    # What this answer states about the two switches; None when it says nothing about them.
    kill_switch: bool | None = None
    access_revoked: bool | None = None
    error_code: str | None = None
    min_tier: str | None = None
    request_id: str | None = None
    retry_after: float | None = None
    rate_limit_limit: float | None = None
    rate_limit_remaining: float | None = None
    detail: str = ""


def _finite(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, 1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def parse_whoami(body: bytes) -> Whoami | str:
    """A well-formed 200 body, or why it is not one. Unknown fields are ignored."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "body is not JSON"
    if not isinstance(data, dict):
        return f"body is a JSON {type(data).__name__}, not an object"
    values: dict[str, Any] = {}
    for name, kind in _FIELDS.items():
        if name not in data:
            return f"field {name} is missing"
        value = data[name]
        if kind is float:
            value = _finite(value)
            if value is None:
                return f"field {name} is not a finite number"
        elif not isinstance(value, kind):
            return f"field {name} is {type(value).__name__}, not {kind.__name__}"
        values[name] = value
    return Whoami(
        organization_id=values["organizationId"],
        workspace_id=values["workspaceId"],
        organization_name=values["organizationName"],
        rate_limit_tier=values["rateLimitTier"],
        kill_switch=values["killSwitch"],
        api_access_revoked=values["apiAccessRevoked"],
        api_key_id=values["apiKeyId"],
        credit_balance=values["creditBalance"],
    )


def _error_of(body: bytes) -> tuple[str | None, str, str | None, str | None]:
    """(code, message, requestId, details.minTier) of an error body, as far as it has them."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, "", None, None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, "", None, None

    def text(value: object) -> str | None:
        return value if isinstance(value, str) else None

    details = error.get("details")
    min_tier = text(details.get("minTier")) if isinstance(details, dict) else None
    return (
        text(error.get("code")),
        text(error.get("message")) or "",
        text(error.get("requestId")),
        min_tier,
    )


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def retry_wait(headers: dict[str, str] | Any, now: float) -> float | None:
    """Seconds to wait after a 429: Retry-After, else X-RateLimit-Reset, else None."""
    retry_after = headers.get("Retry-After")
    seconds = _number(retry_after)
    if seconds is None and retry_after:
        try:
            seconds = max(0.0, parsedate_to_datetime(retry_after).timestamp() - now)
        except (TypeError, ValueError, IndexError):
            seconds = None
    if seconds is not None:
        return seconds
    reset = _number(headers.get("X-RateLimit-Reset"))
    if reset is None:
        return None
    return max(0.0, reset - now) if reset > _UNIX_TIME_FLOOR else reset


def classify(answer: Answer, now: float) -> Result:
    """The outcome table. `now` is the Unix time, for an X-RateLimit-Reset given as a date."""
    if answer.failure is not None:
        outcome = Outcome.TIMEOUT if answer.failure is Failure.TIMEOUT else Outcome.NETWORK_ERROR
        return Result(outcome, detail=answer.detail)

    status = answer.status or 0
    headers = answer.headers
    common: dict[str, Any] = {
        "status": status,
        "request_id": headers.get("X-Request-Id"),
        "rate_limit_limit": _number(headers.get("X-RateLimit-Limit")),
        "rate_limit_remaining": _number(headers.get("X-RateLimit-Remaining")),
    }

    if status == 200:
        if answer.too_large:
            return Result(Outcome.INVALID_RESPONSE, detail="body over 64 KiB", **common)
        parsed = parse_whoami(answer.body)
        if isinstance(parsed, str):
            return Result(Outcome.INVALID_RESPONSE, detail=parsed, **common)
        if parsed.kill_switch:
            outcome, detail = Outcome.KILL_SWITCH, "killSwitch is true"
        elif parsed.api_access_revoked:
            outcome, detail = Outcome.ACCESS_REVOKED, "apiAccessRevoked is true"
        else:
            outcome, detail = Outcome.OK, ""
        return Result(
            outcome,
            whoami=parsed,
            kill_switch=parsed.kill_switch,
            access_revoked=parsed.api_access_revoked,
            detail=detail,
            **common,
        )

    code, message, body_request_id, min_tier = (
        (None, "", None, None) if answer.too_large else _error_of(answer.body)
    )
    common["request_id"] = common["request_id"] or body_request_id
    detail = " ".join(part for part in (f"HTTP {status}", code, message[:200]) if part)

    if status == 503 and code == "KILL_SWITCH":
        return Result(
            Outcome.KILL_SWITCH, kill_switch=True, error_code=code, detail=detail, **common
        )
    if status == 401:
        outcome = Outcome.UNAUTHENTICATED
    elif status == 402:
        outcome = Outcome.BILLING_EXHAUSTED
    elif status == 429:
        return Result(
            Outcome.RATE_LIMITED,
            error_code=code,
            retry_after=retry_wait(headers, now),
            detail=detail,
            **common,
        )
    elif 300 <= status < 500:
        # Redirects are not followed, so that the key never travels to another host.
        outcome = Outcome.CLIENT_ERROR
    elif 500 <= status < 600:
        outcome = Outcome.SERVER_ERROR
    else:
        outcome = Outcome.INVALID_RESPONSE
    return Result(outcome, error_code=code, min_tier=min_tier, detail=detail, **common)
