"""structlog, configured once: JSON lines on stderr with the headline first, console lines for a
person, and the level filter."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from sidecar.logs import setup_logging
from sidecar.values import LogFormat, LogLevel


@pytest.fixture(autouse=True)
def restore() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_json_lines_lead_with_timestamp_level_severity_and_event(
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = setup_logging(LogFormat.JSON, LogLevel.INFO)
    log.info("listening", address="127.0.0.1:8080")
    line = capsys.readouterr().err.strip()
    event = json.loads(line)
    assert list(event)[:4] == ["timestamp", "level", "severity", "event"]
    assert (event["level"], event["severity"], event["event"], event["address"]) == (
        "info",
        "INFO",
        "listening",
        "127.0.0.1:8080",
    )
    assert event["timestamp"].endswith("Z")


def test_the_level_filters_what_is_written(capsys: pytest.CaptureFixture[str]) -> None:
    log = setup_logging(LogFormat.JSON, LogLevel.WARNING)
    log.info("routine")
    log.warning("whoami failed")
    lines = capsys.readouterr().err.strip().splitlines()
    assert [json.loads(line)["event"] for line in lines] == ["whoami failed"]


def test_console_lines_are_for_a_person(capsys: pytest.CaptureFixture[str]) -> None:
    log = setup_logging(LogFormat.CONSOLE, LogLevel.DEBUG)
    log.debug("whoami", outcome="ok")
    line = capsys.readouterr().err
    assert "whoami" in line
    assert "outcome=ok" in line
    assert not line.startswith("{")
