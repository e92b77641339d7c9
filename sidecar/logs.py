"""structlog, configured once: JSON lines (or console) on stderr, filtered by level."""

from __future__ import annotations

import logging
import sys
from typing import Final

import structlog

from .values import LogFormat, LogLevel

_LEVELS: Final = {
    LogLevel.DEBUG: logging.DEBUG,
    LogLevel.INFO: logging.INFO,
    LogLevel.WARNING: logging.WARNING,
    LogLevel.ERROR: logging.ERROR,
}

# structlog's level names → the usual severity names.
_SEVERITIES: Final = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
    "exception": "ERROR",
    "critical": "CRITICAL",
}


def _add_severity(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """`severity` beside `level`, in the names log pipelines grade by (Cloud Logging reads it;
    without it every stderr line shows as ERROR there)."""
    level = event.get("level")
    if isinstance(level, str):
        event["severity"] = _SEVERITIES.get(level, level.upper())
    return event


def _headline_first(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """timestamp, level and event lead each JSON line, so a person can scan raw logs."""
    head = {
        key: event.pop(key) for key in ("timestamp", "level", "severity", "event") if key in event
    }
    return {**head, **event}


def setup_logging(log_format: LogFormat, level: LogLevel) -> structlog.typing.FilteringBoundLogger:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if log_format is LogFormat.JSON
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            *([_add_severity] if log_format is LogFormat.JSON else []),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _headline_first,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger("layers-sidecar")
    return logger
