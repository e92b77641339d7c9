"""aiohttp's and asyncio's own error reports, as rate-limited JSON lines.

A malformed request, a TLS hello on a plain port or an accept() that ran out of descriptors
would each print a plain-text traceback; here each becomes at most one JSON line a second,
with how many were held back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any, Final

import structlog

from ..redact import clean
from ..throttle import Throttle

Log = structlog.typing.FilteringBoundLogger

# At most one line this often, with a count.
ERROR_LOG_EVERY: Final = 1.0
# What of an error's text may be logged: its first words, up to whatever starts to quote input
# (a colon, a quote, a new line) or to name what was being read.
_WORDS: Final = re.compile(r"[A-Za-z0-9 ().,-]*")
_READING: Final = " when reading"


def describe(error: BaseException) -> str:
    """The error's class, status and first words, never the bytes it quotes.

    aiohttp's parser errors quote the offending request line or header line ("Invalid header
    value char: b'X-Api-Key: ...'"), a client's key included; no redaction can help here, where
    no key is known, so nothing after the first words is kept. An OSError's text is the
    system's (EMFILE), kept whole.
    """
    name = type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        return clean(f"{name}: [Errno {error.errno}] {error.strerror}", None, limit=200)
    code = getattr(error, "code", None)
    # aiohttp's HTTP errors: `message`, without str()'s "400, message=" prefix.
    text = str(error) if code is None else str(getattr(error, "message", "") or "")
    words = _WORDS.match(text.strip())
    summary = (words.group(0) if words else "").split(_READING, 1)[0].strip(" ,.(-")
    status = f"{code} " if isinstance(code, int) else ""
    return clean(f"{name}: {status}{summary}".rstrip(": "), None, limit=200)


class _JsonErrors(logging.Handler):
    """The server logger's records as JSON lines. The message is escaped and cut, the exception
    reduced to its first words (`describe`: it may quote a client's header line, a key in it);
    the traceback is dropped: it is aiohttp's, not a fault of ours to debug."""

    def __init__(self, log: Log, throttle: Throttle) -> None:
        super().__init__(logging.INFO)
        self._log = log
        self._throttle = throttle

    def emit(self, record: logging.LogRecord) -> None:
        tally = self._throttle.note()
        if tally is None:
            return
        error = record.exc_info[1] if record.exc_info else None
        self._log.warning(
            "http error",
            message=clean(record.getMessage(), None, limit=200),
            error=describe(error) if error else None,
            dropped=tally.held,
        )


def server_logger(log: Log, throttle: Throttle) -> logging.Logger:
    """The logger to give aiohttp's runner: its reports become rate-limited JSON lines."""
    logger = logging.getLogger("layers_sidecar.http")
    logger.handlers = [_JsonErrors(log, throttle)]
    logger.setLevel(logging.INFO)  # aiohttp's debug reports (a TLS hello on the port) dropped
    logger.propagate = False
    return logger


def loop_errors(log: Log, throttle: Throttle) -> Callable[..., None]:
    """asyncio's exception handler: one rate-limited JSON line instead of a traceback each
    (accept() out of descriptors would otherwise print one every time it retries)."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if throttle.note() is None:
            return
        error = context.get("exception")
        log.warning(
            "event loop error",
            message=clean(str(context.get("message", "")), None, limit=200),
            error=describe(error) if error else None,
        )

    return handle
