"""Log-then-throttle: the first report of a kind goes through, then at most one every `every`
seconds, with how many were held back. Pure: the clock is passed in.

One helper for every place that would otherwise log once per event: aiohttp's and asyncio's
error reports (once a second), a poll failure repeated poll after poll, the hub's upstream
trouble (once a minute).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

# A failure repeated call after call is logged when it starts, then at most this often.
REPEAT_LOG_EVERY: Final = 60.0


@dataclass(frozen=True)
class Tally:
    """What a report that goes through carries: `run`, the reports of its kind since the run
    began (this one included); `held`, those held back since the last one went through."""

    run: int
    held: int


@dataclass
class _Run:
    count: int = 0
    held: int = 0
    logged_at: float = -math.inf


class Throttle:
    """Counts reports by kind; `note` says which to log."""

    def __init__(self, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._runs: dict[Hashable, _Run] = {}

    def note(self, kind: Hashable = None) -> Tally | None:
        """Counts one report; its Tally when it is to be logged, None when it is held back."""
        run = self._runs.setdefault(kind, _Run())
        run.count += 1
        now = self._clock()
        if now - run.logged_at < self._every:
            run.held += 1
            return None
        tally = Tally(run=run.count, held=run.held)
        run.logged_at, run.held = now, 0
        return tally

    def end(self, kind: Hashable = None) -> None:
        """The run of `kind` is over: its next report starts a new one, logged at once."""
        self._runs.pop(kind, None)

    def only(self, kind: Hashable) -> Tally | None:
        """`note` for trouble that comes one kind at a time: another kind ends every other run,
        and None (no trouble) ends them all and is never logged."""
        for other in [k for k in self._runs if k != kind]:
            del self._runs[other]
        return None if kind is None else self.note(kind)
