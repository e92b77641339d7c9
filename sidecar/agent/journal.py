"""The log policy of `serve`: what each step of the poll loop is worth telling the operator.

It receives `Event` values (result, state, verdict) and owns one thing, the log. At most one line
per event:
- a change of verdict: error when it turns not ready, info when it turns ready, carrying what
  this poll got (outcome, status, detail, request id), so the cause and the effect are one line;
- otherwise a failure when its run starts, then at most once every REPEAT_LOG_EVERY with a count;
  a different failure (another outcome, or the key file going from empty to missing) starts a
  new run;
- a routine good poll only at debug; a new key at info, with its fingerprint.
Every line names the key: its `apiKeyId` once an answer has named it, its fingerprint before.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from ..outcome import Outcome, Result
from ..readiness import STARTING, Event, State, Verdict
from ..throttle import REPEAT_LOG_EVERY, Tally, Throttle

# What one event is worth saying: the event name, its context, and the length of the failure run
# when the repeat policy says this one is to be logged (None: debug only).
_Line = tuple[str, dict[str, object], int | None]


def identity(state: State, request_id: str | None = None) -> dict[str, object]:
    """Who the key is, for a log line: `apiKeyId` and `organizationId` once an answer of this
    key named them, else `keyFingerprint`; and the upstream request id when there is one.
    Unknown values are left out rather than written as None."""
    context: dict[str, object] = {}
    whoami = state.whoami
    if whoami is not None:
        context["apiKeyId"] = whoami.api_key_id
        context["organizationId"] = whoami.organization_id
    elif state.key_fingerprint is not None:
        context["keyFingerprint"] = state.key_fingerprint
    if request_id is not None:
        context["requestId"] = request_id
    return context


def describe(result: Result, elapsed: float | None = None) -> dict[str, object]:
    """What one whoami answer was, for a log line."""
    context: dict[str, object] = {"outcome": result.outcome.value}
    if result.status is not None:
        context["status"] = result.status
    if result.detail:
        context["detail"] = result.detail
    if result.retry_after is not None:
        context["retryAfter"] = result.retry_after
    if result.min_tier is not None:
        context["minTier"] = result.min_tier
    if elapsed is not None:
        context["elapsedMs"] = round(elapsed * 1000, 1)
    return context


def _run(tally: Tally | None) -> int | None:
    """The length of the run to log, when this event is to be logged."""
    return None if tally is None else tally.run


class Journal:
    """Turns the poll loop's events into log lines, following the policy above."""

    def __init__(
        self,
        log: structlog.typing.FilteringBoundLogger,
        *,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        # Failures, and polls answered by the fallback: each a run of one kind at a time.
        self._repeats = Throttle(REPEAT_LOG_EVERY, mono)
        self._fallbacks = Throttle(REPEAT_LOG_EVERY, mono)
        self._verdict: Verdict = STARTING
        self._key: str | None = None

    def __call__(self, event: Event) -> None:
        state = event.state
        self._note_key(state)
        if event.result is not None:
            self._note_fallback(event)
        line: _Line | None
        if event.key_error is not None:
            # The detail is the kind: "is empty" then "does not exist" are two runs, two lines.
            count = _run(self._repeats.only(f"key_unavailable: {event.key_error}"))
            line = ("api key unavailable", {"detail": event.key_error, **identity(state)}, count)
        elif event.result is not None:
            result = event.result
            failure = None if result.outcome is Outcome.OK else result.outcome.value
            count = _run(self._repeats.only(failure))
            context = {**describe(result, event.elapsed), **identity(state, result.request_id)}
            line = ("whoami" if failure is None else "whoami failed", context, count)
        else:
            line = None  # a re-reading of the verdict (it went stale), no new answer
        # A change of verdict says it all in one line; otherwise the line, as the policy says.
        if self._verdict_changed(event.verdict, state, line) or line is None:
            return
        name, context, count = line
        if name == "whoami" or count is None:
            self._log.debug(name, **context)
        elif name == "api key unavailable":
            self._log.error(name, repeated=count, **context)
        else:
            self._log.warning(name, repeated=count, **context)

    def _note_fallback(self, event: Event) -> None:
        """A run of polls answered by --fallback-api-url: a warning when it starts, then at
        most once every REPEAT_LOG_EVERY, with a count. The hub being down is worth knowing;
        it is no failure of the poll."""
        count = _run(self._fallbacks.only("fallback" if event.fallback else None))
        if count is not None:
            self._log.warning(
                "api url unreachable, used the fallback",
                detail=event.fallback,
                repeated=count,
                **identity(event.state),
            )

    def _note_key(self, state: State) -> None:
        tag = state.key_fingerprint
        if self._key is not None and tag is not None and tag != self._key:
            self._log.info("api key changed", keyFingerprint=tag)
        self._key = tag if tag is not None else self._key

    def _verdict_changed(
        self,
        current: Verdict,
        state: State,
        line: _Line | None,
    ) -> bool:
        """Logs a change of verdict, with what this event was; True when it did."""
        previous, self._verdict = self._verdict, current
        if (current.ready, current.reason) == (previous.ready, previous.reason):
            return False
        context: dict[str, object] = {
            "ready": current.ready,
            "reason": current.reason.value,
            "previousReason": previous.reason.value,
        }
        context.update(line[1] if line is not None else identity(state, state.last_request_id))
        if current.ready:
            context.pop("detail", None)
            self._log.info("ready", **context)
        else:
            # One detail: the verdict's, then the answer's when it adds something (a stale
            # verdict names the outcome; the answer says what was wrong with it).
            cause = str(context.get("detail", ""))
            parts = [current.detail] if current.detail else []
            if cause and cause not in current.detail:
                parts.append(cause)
            context["detail"] = "; ".join(parts)
            self._log.error("not ready", **context)
        return True
