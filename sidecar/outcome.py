"""Answer → Result: the outcome table of SPEC.md as one pure function.

Branches on the HTTP status and `error.code`, never on `error.message`. Never raises: whatever
bytes arrive, the caller gets an outcome. Fails closed: a stated switch wins over whatever else
the body holds, an ambiguous body (a name given twice with different values) is malformed, and
every upstream string is redacted and escaped (`redact.clean`) before it leaves this module.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from .redact import clean
from .settings import Secret

# SPEC: bodies are read up to 1 MiB to find a stated switch, and used up to 64 KiB otherwise.
BODY_LIMIT: Final = 64 * 1024
SWITCH_SEARCH_LIMIT: Final = 1024 * 1024
# How much of each upstream string is kept: identifiers, names and free text.
ID_LIMIT: Final = 128
NAME_LIMIT: Final = 256


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

# Reset values above this are Unix times; below, seconds from now.
UNIX_TIME_FLOOR: Final = 1e9

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
    # Seconds a 429 asks to wait (Retry-After, else X-RateLimit-Reset), as sent: `schedule`
    # bounds it. `wait_unreadable`: a wait was sent in a form that does not parse.
    retry_after: float | None = None
    wait_unreadable: bool = False
    # X-RateLimit-Reset as seconds from now, on any answer (for adaptive polling).
    rate_limit_reset: float | None = None
    rate_limit_limit: float | None = None
    rate_limit_remaining: float | None = None
    detail: str = ""


# Headers: parsed strictly. A form the RFC does not allow is not guessed at.

# RFC 9110 §10.2.3: delay-seconds is 1*DIGIT; no sign, no fraction, no `1_000`, no `1e12`.
# Twelve digits is already 30,000 years: anything longer is clamped the same way, unparsed.
_DELAY_SECONDS: Final = re.compile(r"[0-9]{1,12}")
# What a longer run of digits counts as: finite, so that it can still be logged as JSON.
FOREVER: Final = 1e12
_LONG_DIGITS: Final = re.compile(r"[0-9]{13,}")
# RFC 9110 §5.6.7: a recipient must accept all three HTTP-date forms. IMF-fixdate, the one a
# sender must generate: `Sun, 06 Nov 1994 08:49:37 GMT`; the obsolete RFC 850 form:
# `Sunday, 06-Nov-94 08:49:37 GMT`; and asctime's: `Sun Nov  6 08:49:37 1994`.
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_TIME: Final = r"(?P<h>[0-9]{2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})"
_IMF_FIXDATE: Final = re.compile(
    rf"(?P<day>[A-Z][a-z]{{2}}), (?P<dd>[0-9]{{2}}) (?P<mon>[A-Z][a-z]{{2}}) (?P<yyyy>[0-9]{{4}}) "
    rf"{_TIME} GMT"
)
_RFC850: Final = re.compile(
    rf"(?P<day>[A-Z][a-z]{{5,8}}), (?P<dd>[0-9]{{2}})-(?P<mon>[A-Z][a-z]{{2}})-(?P<yy>[0-9]{{2}}) "
    rf"{_TIME} GMT"
)
_ASCTIME: Final = re.compile(
    rf"(?P<day>[A-Z][a-z]{{2}}) (?P<mon>[A-Z][a-z]{{2}}) (?P<dd>[ 0-9][0-9]) {_TIME} "
    r"(?P<yyyy>[0-9]{4})"
)

# X-RateLimit-Reset: seconds or a Unix time, with an optional fraction; nothing else.
_RESET: Final = re.compile(r"[0-9]{1,16}(?:\.[0-9]{1,9})?")
_COUNT: Final = _RESET


def _year(match: re.Match[str], now: float) -> int:
    if match.groupdict().get("yyyy") is not None:
        return int(match["yyyy"])
    # RFC 850's two digits: the most recent such year not more than 50 years ahead (RFC 9110).
    this_year = datetime.fromtimestamp(now, UTC).year
    year = this_year - this_year % 100 + int(match["yy"])
    return year - 100 if year > this_year + 50 else year


def _http_date(text: str, now: float) -> float | None:
    match = _IMF_FIXDATE.fullmatch(text) or _ASCTIME.fullmatch(text)
    days: tuple[str, ...] = _DAYS
    if match is None:
        match, days = _RFC850.fullmatch(text), _LONG_DAYS
    if match is None or match["day"] not in days or match["mon"] not in _MONTHS:
        return None
    try:
        moment = datetime(
            _year(match, now),
            _MONTHS.index(match["mon"]) + 1,
            int(match["dd"]),
            int(match["h"]),
            int(match["m"]),
            int(match["s"]),
            tzinfo=UTC,
        )
    except (ValueError, OverflowError, OSError):  # 31 Feb, hour 25, year 0; `now` out of range
        return None
    return moment.timestamp()


def parse_retry_after(text: str | None, now: float) -> float | None:
    """Seconds the upstream asks to wait, or None when the header is absent or does not parse.

    The result may be 0 (a date in the past) or enormous (year 9999): `bounded` decides.
    """
    if text is None:
        return None
    text = text.strip(" \t")
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    if _LONG_DIGITS.fullmatch(text):
        return FOREVER
    when = _http_date(text, now)
    return None if when is None else max(0.0, when - now)


def parse_reset(text: str | None, now: float) -> float | None:
    """X-RateLimit-Reset as seconds from now: above 10^9 a Unix time, otherwise a delay."""
    if text is None:
        return None
    text = text.strip(" \t")
    if not _RESET.fullmatch(text):
        return None
    value = float(text)
    return max(0.0, value - now) if value > UNIX_TIME_FLOOR else value


def requested_wait(headers: Mapping[str, str], now: float) -> tuple[float | None, bool]:
    """What a 429 asks for: Retry-After, else X-RateLimit-Reset, else None; and whether a
    header that was sent did not parse (then the normal back-off applies, not --interval)."""
    unreadable = False
    for name, parse in (("Retry-After", parse_retry_after), ("X-RateLimit-Reset", parse_reset)):
        text = headers.get(name)
        wait = parse(text, now)
        if wait is not None:
            return wait, False
        unreadable = unreadable or text is not None
    return None, unreadable


def parse_count(text: str | None) -> float | None:
    """X-RateLimit-Limit / -Remaining: a plain non-negative number, or None."""
    if text is None:
        return None
    text = text.strip(" \t")
    return float(text) if _COUNT.fullmatch(text) else None


# Bodies.


class _Ambiguous(ValueError):
    pass


def _canonical(value: object) -> str:
    # `true` and `1` compare equal in Python; as JSON they are different statements.
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a name given twice with different values makes the body malformed."""
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result and _canonical(result[name]) != _canonical(value):
            raise _Ambiguous(f"name {name!r} is given twice with different values")
        result[name] = value
    return result


_STRICT: Final = json.JSONDecoder(object_pairs_hook=_strict_object)


def _loads(body: bytes) -> Any:
    """json.loads with duplicate names checked; raises ValueError or RecursionError."""
    return _STRICT.decode(body.decode("utf-8"))


_LENIENT: Final = json.JSONDecoder()
# The C scanner behind json.loads: a JSON string starting after its opening quote.
_scanstring: Final[Callable[[str, int], tuple[str, int]]] = json.decoder.scanstring  # type: ignore[attr-defined]
# What skipping a value that does not parse looks at: strings (skipped whole, unterminated at
# the end of a cut body too), runs of brackets, and commas. Everything else is passed over in C.
_SKIP_TOKEN: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[{\[]+|[}\]]+|,', re.DOTALL)
_SPACE: Final = re.compile(r"[ \t\n\r]*")
# A member whose value does not parse (nested too deep, a literal JSON lacks, cut short).
_UNREADABLE: Final = object()


def _text_of(body: bytes) -> str:
    """The body as text, in whichever encoding json.loads would read it (a UTF-8 BOM, UTF-16)."""
    try:
        encoding = json.detect_encoding(body)
    except (TypeError, ValueError):
        encoding = "utf-8"
    return body.decode(encoding, errors="replace").removeprefix("\ufeff")


def _skip_space(text: str, pos: int) -> int:
    if pos >= len(text) or text[pos] not in " \t\n\r":
        return pos
    match = _SPACE.match(text, pos)
    return pos if match is None else match.end()


def _skip_value(text: str, pos: int) -> int:
    """Where the value (or garbage) at `pos` ends: the next `,` or closing bracket outside it.

    Counts brackets without recursing, so a value nested a million deep costs one regex pass.
    """
    depth = 0
    for match in _SKIP_TOKEN.finditer(text, pos):
        piece = match.group()
        if piece[0] in "{[":
            depth += len(piece)
        elif piece[0] in "}]":
            if len(piece) > depth:
                return match.start() + depth
            depth -= len(piece)
        elif piece == "," and depth == 0:
            return match.start()
    return len(text)


def _members(text: str, pos: int) -> Iterator[tuple[str, Any, int]]:
    """The members of the JSON object whose `{` is just before `pos`: name, value (or
    _UNREADABLE) and where the value starts, in order, as far as they can be told apart.

    A value that does not parse is skipped, not the end: a switch stated after a member nested
    100,000 deep, or after `undefined`, is still found; so is one before a cut or garbage.
    """
    while True:
        pos = _skip_space(text, pos)
        if not text.startswith('"', pos):
            return
        try:
            name, pos = _scanstring(text, pos + 1)
        except ValueError:
            return
        pos = _skip_space(text, pos)
        if not text.startswith(":", pos):
            return
        start = _skip_space(text, pos + 1)
        try:
            value, pos = _LENIENT.raw_decode(text, start)
        except (ValueError, RecursionError):
            value, pos = _UNREADABLE, _skip_value(text, start)
        yield name, value, start
        pos = _skip_space(text, pos)
        if not text.startswith(",", pos):
            pos = _skip_value(text, pos)  # garbage after the value: on to the next member
            if not text.startswith(",", pos):
                return
        pos += 1


def top_level_members(body: bytes) -> Iterator[tuple[str, Any]]:
    """The members of a top-level JSON object, in order, as far as they can be told apart."""
    text = _text_of(body)
    pos = _skip_space(text, 0)
    if text.startswith("{", pos):
        for name, value, _ in _members(text, pos + 1):
            yield name, value


@dataclass(frozen=True)
class Stated:
    """What a body states about the switches, however malformed the rest of it is."""

    kill_switch: bool = False
    access_revoked: bool = False
    kill_switch_error: bool = False


def stated_switches(body: bytes) -> Stated:
    """Any `true` for a switch at the top level, or an `error.code` of KILL_SWITCH, counts.

    Given twice, once true and once false, the switch counts as stated: in doubt, not ready.
    """
    kill = revoked = error = False
    text = _text_of(body)
    pos = _skip_space(text, 0)
    if not text.startswith("{", pos):
        return Stated()
    for name, value, start in _members(text, pos + 1):
        if name == "killSwitch" and value is True:
            kill = True
        elif name == "apiAccessRevoked" and value is True:
            revoked = True
        elif name == "error" and isinstance(value, dict):
            error = error or value.get("code") == "KILL_SWITCH"
        elif name == "error" and value is _UNREADABLE and text.startswith("{", start):
            inner = _members(text, start + 1)
            error = error or any(n == "code" and v == "KILL_SWITCH" for n, v, _ in inner)
    return Stated(kill, revoked, error)


def _finite(value: object) -> float | None:
    """A JSON number as a finite float; None for anything else (bools, 1e400, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def parse_whoami(body: bytes, key: Secret | None = None) -> Whoami | str:
    """A well-formed 200 body, or why it is not one. Unknown fields are ignored.

    String fields come back cleaned (`redact.clean`): an upstream that echoes the key, or sends
    a newline or a lone surrogate in a name, cannot carry it into /status, a label or a log.
    """
    try:
        data = _loads(body)
    except (ValueError, RecursionError) as error:
        if isinstance(error, _Ambiguous):
            return clean(f"body is ambiguous: {error}", key)
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
        elif isinstance(value, str):
            value = clean(value, key, limit=NAME_LIMIT)
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


@dataclass(frozen=True)
class _Error:
    code: str | None = None
    message: str = ""
    request_id: str | None = None
    min_tier: str | None = None


def _error_of(body: bytes, key: Secret | None) -> _Error:
    """code, message, requestId and details.minTier of an error body, cleaned, where present."""
    try:
        data = _loads(body)
    except (ValueError, RecursionError):
        return _Error()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return _Error()

    def text(value: object, limit: int) -> str | None:
        return None if not isinstance(value, str) else clean(value, key, limit=limit)

    details = error.get("details")
    return _Error(
        code=text(error.get("code"), ID_LIMIT),
        message=text(error.get("message"), NAME_LIMIT) or "",
        request_id=text(error.get("requestId"), ID_LIMIT),
        min_tier=text(details.get("minTier"), ID_LIMIT) if isinstance(details, dict) else None,
    )


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

    if status == 200:
        # A stated switch first: it wins over anything else the body holds, or lacks.
        stated = stated_switches(answer.body)
        parsed = "body over 64 KiB" if too_large else parse_whoami(answer.body[:BODY_LIMIT], key)
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

    if status == 503 and stated_switches(answer.body).kill_switch_error:
        error = _Error(code="KILL_SWITCH") if too_large else _error_of(answer.body, key)
        common["request_id"] = common["request_id"] or error.request_id
        detail = " ".join(part for part in ("HTTP 503 KILL_SWITCH", error.message) if part)
        return Result(
            Outcome.KILL_SWITCH, kill_switch=True, error_code="KILL_SWITCH", detail=detail, **common
        )

    error = _Error() if too_large else _error_of(answer.body, key)
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
