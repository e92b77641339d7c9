"""The headers of an answer that say when to call again: RFC 9110 dates and delays
(Retry-After) and the X-RateLimit-* counts. Parsed strictly: a form the RFC does not allow is not
guessed at; `schedule.bounded` decides how long a parsed wait may really be. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

# Reset values above this are Unix times; below, seconds from now.
UNIX_TIME_FLOOR: Final = 1e9

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
