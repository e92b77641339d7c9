"""`--ready-file`: a file that exists exactly while the sidecar is ready.

For workers that no probe reaches: a readiness probe only takes a pod out of a Service, it does
not stop a queue worker from calling Layers under a kill switch. The worker shares a volume (an
`emptyDir`) with the sidecar and checks the file before taking work.

Written and removed atomically: the content goes to a temporary file in the same directory, which
rename(2) then puts in place, so a reader sees the whole file or none; removal is one unlink(2).
A file left by an earlier run (an `emptyDir` outlives a container restart) is removed at start,
and the file is removed again at shutdown: a stopped sidecar vouches for nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import structlog

from ..readiness import Event


class ReadyFile:
    """Follows the verdict of each event: the file is there while it is ready."""

    def __init__(self, path: Path, log: structlog.typing.FilteringBoundLogger) -> None:
        self.path = path
        self._log = log
        self._present = False
        self._failed = False
        self._remove()

    def __call__(self, event: Event) -> None:
        if event.verdict.ready and not self._present:
            self._write(event)
        elif not event.verdict.ready and self._present:
            self._remove()

    def close(self) -> None:
        self._remove()

    def _write(self, event: Event) -> None:
        whoami = event.state.whoami
        since = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds")
        text = f"ready since {since.replace('+00:00', 'Z')}\n"
        if whoami is not None:
            text += f"apiKeyId {whoami.api_key_id}\n"
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as error:
            with contextlib.suppress(OSError):  # it may never have been created
                temporary.unlink()
            self._trouble("cannot write the ready file", error)
            return
        self._present, self._failed = True, False

    def _remove(self) -> None:
        try:
            self.path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass  # not there: nothing vouches
        except OSError as error:
            self._trouble("cannot remove the ready file", error)
            return
        self._present = False

    def _trouble(self, event: str, error: OSError) -> None:
        # Logged once per run of trouble: a read-only volume would otherwise log every poll.
        if not self._failed:
            self._log.error(event, path=str(self.path), error=error.strerror or str(error))
        self._failed = True
