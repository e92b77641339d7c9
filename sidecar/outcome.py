"""Answer → Result: the outcome table of SPEC.md as one pure function.

Branches on the HTTP status and `error.code`, never on `error.message`. Never raises: whatever
bytes arrive, the caller gets an outcome. Fails closed: a stated switch wins over whatever else
the body holds, an ambiguous body (a name given twice with different values) is malformed, and
every upstream string is redacted and escaped (`redact.clean`) before it leaves this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from .bodies import ID_LIMIT, ErrorBody, Whoami, error_body, parse_whoami
from .headers import parse_count, parse_reset, requested_wait
from .jsonscan import Stated, decode, stated_switches
from .redact import clean
from .secret import Secret

# SPEC: bodies are read up to 1 MiB to find a stated switch, and used up to 64 KiB otherwise.
BODY_LIMIT: Final = 64 * 1024
SWITCH_SEARCH_LIMIT: Final = 1024 * 1024


class Failure(StrEnum):
    TIMEOUT = "timeout"
    NETWORK = "network_error"


@dataclass(frozen=True)
class Answer:
    """What one whoami attempt produced: an HTTP answer, or a transport failure. A failure
    after the status line keeps the status and the part of the body that arrived."""

    status: int | None = None
    # At most SWITCH_SEARCH_LIMIT bytes; `too_large` when the upstream sent more than was read.
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
    # Seconds a 429 asks to wait (Retry-After, else X-RateLimit-Reset), as sent: `schedule`
    # bounds it. `wait_unreadable`: a wait was sent in a form that does not parse.
    retry_after: float | None = None
    wait_unreadable: bool = False
    # X-RateLimit-Reset as seconds from now, on any answer (for adaptive polling).
    rate_limit_reset: float | None = None
    rate_limit_limit: float | None = None
    rate_limit_remaining: float | None = None
    detail: str = ""


# 408 Request Timeout, 421 Misdirected Request, 425 Too Early: worth another try, not a stop.
_RETRYABLE_4XX: Final = frozenset({408, 421, 425})


def classify(answer: Answer, now: float, key: Secret | None = None) -> Result:
    """The outcome table. `now` is the Unix time, for waits given as dates; `key` is what the
    upstream must not be able to echo into any string of the Result."""
    if answer.failure is not None:
        outcome = Outcome.TIMEOUT if answer.failure is Failure.TIMEOUT else Outcome.NETWORK_ERROR
        detail = clean(answer.detail, key)
        # A switch stated before the body was cut (a stall, a reset) still wins.
        stated = stated_switches(answer.body) if answer.body else Stated()
        if answer.status == 200 and (stated.kill_switch or stated.access_revoked):
            outcome = Outcome.KILL_SWITCH if stated.kill_switch else Outcome.ACCESS_REVOKED
            name = "killSwitch" if stated.kill_switch else "apiAccessRevoked"
            return Result(
                outcome,
                status=200,
                kill_switch=stated.kill_switch or None,
                access_revoked=stated.access_revoked or None,
                detail=f"{name} is true (the body was cut: {detail})",
            )
        if answer.status == 503 and stated.kill_switch_error:
            return Result(
                Outcome.KILL_SWITCH,
                status=503,
                kill_switch=True,
                error_code="KILL_SWITCH",
                detail=f"HTTP 503 KILL_SWITCH (the body was cut: {detail})",
            )
        return Result(outcome, detail=detail)

    status = answer.status or 0
    headers = answer.headers
    request_id = headers.get("X-Request-Id")
    common: dict[str, Any] = {
        "status": status,
        "request_id": None if request_id is None else clean(request_id, key, limit=ID_LIMIT),
        "rate_limit_limit": parse_count(headers.get("X-RateLimit-Limit")),
        "rate_limit_remaining": parse_count(headers.get("X-RateLimit-Remaining")),
        "rate_limit_reset": parse_reset(headers.get("X-RateLimit-Reset"), now),
    }
    too_large = answer.too_large or len(answer.body) > BODY_LIMIT
    # Decoded once, for the switches and the fields both; a body over 64 KiB is only scanned.
    decoded = None if too_large else decode(answer.body)

    if status == 200:
        # A stated switch first: it wins over anything else the body holds, or lacks.
        stated = stated_switches(answer.body, decoded)
        parsed = "body over 64 KiB" if too_large else parse_whoami(answer.body, key, decoded)
        whoami = parsed if isinstance(parsed, Whoami) else None
        kill = stated.kill_switch or bool(whoami and whoami.kill_switch)
        revoked = stated.access_revoked or bool(whoami and whoami.api_access_revoked)
        if kill or revoked:
            outcome = Outcome.KILL_SWITCH if kill else Outcome.ACCESS_REVOKED
            name = "killSwitch" if kill else "apiAccessRevoked"
            detail = f"{name} is true" + ("" if whoami else f" ({parsed})")
            return Result(
                outcome,
                whoami=whoami,
                # A malformed body states only what it says is true; the rest stays as it was.
                kill_switch=kill or (False if whoami else None),
                access_revoked=revoked or (False if whoami else None),
                detail=detail,
                **common,
            )
        if whoami is None:
            return Result(Outcome.INVALID_RESPONSE, detail=str(parsed), **common)
        return Result(
            Outcome.OK,
            whoami=whoami,
            kill_switch=whoami.kill_switch,
            access_revoked=whoami.api_access_revoked,
            **common,
        )

    if status == 503 and stated_switches(answer.body, decoded).kill_switch_error:
        error = (
            ErrorBody(code="KILL_SWITCH") if too_large else error_body(answer.body, key, decoded)
        )
        common["request_id"] = common["request_id"] or error.request_id
        detail = " ".join(part for part in ("HTTP 503 KILL_SWITCH", error.message) if part)
        return Result(
            Outcome.KILL_SWITCH, kill_switch=True, error_code="KILL_SWITCH", detail=detail, **common
        )

    error = ErrorBody() if too_large else error_body(answer.body, key, decoded)
    common["request_id"] = common["request_id"] or error.request_id
    detail = " ".join(part for part in (f"HTTP {status}", error.code, error.message) if part)
    if status == 401:
        outcome = Outcome.UNAUTHENTICATED
    elif status == 402:
        outcome = Outcome.BILLING_EXHAUSTED
    elif status == 429:
        wait, unreadable = requested_wait(headers, now)
        return Result(
            Outcome.RATE_LIMITED,
            error_code=error.code,
            retry_after=wait,
            wait_unreadable=unreadable,
            detail=detail,
            **common,
        )
    elif status in _RETRYABLE_4XX:
        outcome = Outcome.SERVER_ERROR
    elif 300 <= status < 500:
        # Redirects are not followed, so that the key never travels to another host.
        outcome = Outcome.CLIENT_ERROR
    elif 500 <= status < 600:
        outcome = Outcome.SERVER_ERROR
    else:
        outcome = Outcome.INVALID_RESPONSE
    return Result(outcome, error_code=error.code, min_tier=error.min_tier, detail=detail, **common)
