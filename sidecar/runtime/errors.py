"""aiohttp's and asyncio's own error reports, as rate-limited JSON lines.

A malformed request, a TLS hello on a plain port or an accept() that ran out of descriptors
would each print a plain-text traceback; here each becomes at most one JSON line a second,
with how many were held back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import structlog

from ..redact import clean
from ..throttle import Throttle

Log = structlog.typing.FilteringBoundLogger

# At most one line this often, with a count.
ERROR_LOG_EVERY: Final = 1.0


class _JsonErrors(logging.Handler):
    """The server logger's records as JSON lines. The message and the exception are
    upstream-of-us bytes (a client's request line) and are escaped and cut; the traceback is
    dropped: it is aiohttp's, not a fault of ours to debug."""

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
            error=clean(f"{type(error).__name__}: {error}", None) if error else None,
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
            error=clean(f"{type(error).__name__}: {error}", None) if error else None,
        )

    return handle
