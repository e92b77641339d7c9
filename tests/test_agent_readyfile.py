"""--ready-file fed plain events: there exactly while ready, replaced whole, trouble logged once."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from sidecar.agent.readyfile import ReadyFile
from sidecar.readiness import STARTING, Event, Reason, State, Verdict

READY = Event(State(), Verdict(True, Reason.OK))
NOT_READY = Event(State(), Verdict(False, Reason.KILL_SWITCH, "killSwitch is true"))
Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_logs() as captured:
        yield captured


def test_the_file_follows_the_verdict(tmp_path: Path) -> None:
    path = tmp_path / "ready"
    ready_file = ReadyFile(path, structlog.get_logger())
    ready_file(Event(State(), STARTING))
    assert not path.exists()
    ready_file(READY)
    assert path.read_text().startswith("ready since ")
    ready_file(NOT_READY)
    assert not path.exists()
    ready_file(READY)
    ready_file.close()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_a_file_left_by_an_earlier_run_is_removed_at_start(tmp_path: Path) -> None:
    path = tmp_path / "ready"
    path.write_text("ready since yesterday\n")
    ReadyFile(path, structlog.get_logger())
    assert not path.exists()


def test_trouble_writing_is_logged_once_and_retried(tmp_path: Path, logs: Logs) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    ready_file = ReadyFile(blocker / "ready", structlog.get_logger())
    for _ in range(3):
        ready_file(READY)
    assert [e["event"] for e in logs] == ["cannot write the ready file"]
    assert list(tmp_path.iterdir()) == [blocker]
    # The volume comes back: the next ready event writes the file.
    blocker.unlink()
    blocker.mkdir()
    ready_file(READY)
    assert (blocker / "ready").exists()
