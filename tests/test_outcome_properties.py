"""Properties of the pure decision functions, over bodies and headers that hypothesis makes up.

Whatever bytes arrive, `classify` returns an outcome and never raises; a body that is not a
well-formed whoami is never `ok`; and a malformed body never turns a not-ready verdict ready.
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Final

from hypothesis import example, given
from hypothesis import strategies as st

from sidecar.bodies import parse_whoami
from sidecar.jsonscan import stated_switches
from sidecar.outcome import Answer, Failure, Outcome, classify
from sidecar.readiness import STARTING, Instant, State, advance, verdict
from tests.strategies import json_values
from tests.support import WHOAMI as GOOD

# What each field must be; every other JSON type is wrong for it.
KINDS: Final = {
    "organizationId": "string",
    "workspaceId": "string",
    "organizationName": "string",
    "rateLimitTier": "string",
    "killSwitch": "boolean",
    "apiAccessRevoked": "boolean",
    "apiKeyId": "string",
    "creditBalance": "number",
}
KINDS_OF_JSON: Final = ("null", "boolean", "integer", "float", "string", "array", "object")
ALLOWED: Final = {"string": {"string"}, "boolean": {"boolean"}, "number": {"integer", "float"}}
NOW: Final = 1_800_000_000.0


def of_type(kind: str) -> st.SearchStrategy[Any]:
    """Values of one JSON type, including the awkward ones (huge ints, NaN, nesting)."""
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "integer": st.integers() | st.sampled_from([10**400, -(10**400), 2**63]),
        "float": st.floats(allow_nan=True, allow_infinity=True),
        "string": st.text(max_size=30),
        "array": st.lists(json_values, max_size=3),
        "object": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
    }[kind]


def wrong_for(kind: str) -> st.SearchStrategy[Any]:
    """Values of every JSON type but `kind` (a number is an integer or a float)."""
    return st.one_of(*(of_type(t) for t in KINDS_OF_JSON if t not in ALLOWED[kind]))


def ok_answer(body: bytes, status: int = 200) -> Answer:
    return Answer(status=status, body=body, headers={"X-Request-Id": "req_1"})


def dumps(value: Any) -> bytes:
    # allow_nan: Python's json reads NaN and Infinity, so an upstream may well send them.
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mistyped_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A whoami body with one field (at least) given a wrong JSON type."""
    field = draw(st.sampled_from(sorted(KINDS)))
    body = dict(GOOD)
    body[field] = draw(wrong_for(KINDS[field]))
    # Other fields may be wrong too, or right: the one wrong field is enough.
    for other in draw(st.sets(st.sampled_from(sorted(KINDS.keys() - {field})), max_size=3)):
        body[other] = draw(st.one_of(*(of_type(kind) for kind in KINDS_OF_JSON)))
    return field, body


@given(mistyped_bodies())
@example(("creditBalance", {**GOOD, "creditBalance": 10**400}))
@example(("creditBalance", {**GOOD, "creditBalance": -(10**400)}))
@example(("creditBalance", {**GOOD, "creditBalance": math.inf}))
@example(("creditBalance", {**GOOD, "creditBalance": math.nan}))
@example(("killSwitch", {**GOOD, "killSwitch": 0}))
@example(("apiAccessRevoked", {**GOOD, "apiAccessRevoked": "false"}))
def test_a_mistyped_field_is_never_ok_and_never_raises(case: tuple[str, dict[str, Any]]) -> None:
    body = case[1]
    assert isinstance(parse_whoami(dumps(body)), str)
    result = classify(ok_answer(dumps(body)), NOW)
    assert result.whoami is None
    # A switch stated true wins over the malformed rest; otherwise the body is invalid.
    if body.get("killSwitch") is True:
        assert (result.outcome, result.kill_switch) == (Outcome.KILL_SWITCH, True)
    elif body.get("apiAccessRevoked") is True:
        assert (result.outcome, result.access_revoked) == (Outcome.ACCESS_REVOKED, True)
    else:
        assert result.outcome is Outcome.INVALID_RESPONSE
        assert result.kill_switch is None
        assert result.access_revoked is None


@given(st.sampled_from(sorted(KINDS)), st.sampled_from(KINDS_OF_JSON), st.data())
def test_every_field_given_every_wrong_type_is_invalid(
    field: str, kind: str, data: st.DataObject
) -> None:
    value = data.draw(of_type(kind))
    well_typed = kind in ALLOWED[KINDS[field]]
    if well_typed and kind in ("integer", "float"):
        # The right type, yet no usable balance: NaN, an infinity, or an integer past any float.
        well_typed = value == value and abs(value) <= sys.float_info.max
    result = classify(ok_answer(dumps({**GOOD, field: value})), NOW)
    if well_typed or (field in ("killSwitch", "apiAccessRevoked") and value is True):
        assert result.outcome in (Outcome.OK, Outcome.KILL_SWITCH, Outcome.ACCESS_REVOKED)
    else:
        assert result.outcome is Outcome.INVALID_RESPONSE, (field, value)
        assert field in result.detail


@given(st.sampled_from(sorted(KINDS)))
def test_a_missing_field_is_invalid(field: str) -> None:
    body = {k: v for k, v in GOOD.items() if k != field}
    result = classify(ok_answer(dumps(body)), NOW)
    assert result.outcome is Outcome.INVALID_RESPONSE
    assert field in result.detail


@given(json_values)
def test_any_json_document_is_never_ok_unless_it_is_a_whoami(value: Any) -> None:
    result = classify(ok_answer(dumps(value)), NOW)
    assert result.outcome in (
        Outcome.OK,
        Outcome.INVALID_RESPONSE,
        Outcome.KILL_SWITCH,
        Outcome.ACCESS_REVOKED,
    )
    assert (result.outcome is Outcome.OK) == (not isinstance(parse_whoami(dumps(value)), str))


@given(st.binary(max_size=600), st.integers(min_value=100, max_value=999), st.booleans())
@example(b"[" * 100_000, 200, False)  # nesting deep enough to hit the recursion limit
@example(b'{"error": {"code": "KILL_SWITCH"}}', 503, True)
def test_any_bytes_with_any_status_never_raise(body: bytes, status: int, too_large: bool) -> None:
    result = classify(Answer(status=status, body=body, too_large=too_large), NOW)
    if status != 200 or too_large:
        assert result.outcome is not Outcome.OK
    else:
        assert result.outcome is not Outcome.OK or not isinstance(parse_whoami(body), str)


# The readiness fold: a malformed body never makes a not-ready verdict ready.


def states_no_switch(body: bytes) -> bool:
    stated = stated_switches(body)
    return not (stated.kill_switch or stated.access_revoked)


# Malformed and stating no switch (a stated switch wins over the malformed rest: a hard stop).
malformed_answers = st.one_of(
    mistyped_bodies().map(lambda case: dumps(case[1])).filter(states_no_switch).map(ok_answer),
    st.binary(max_size=200)
    .filter(lambda b: isinstance(parse_whoami(b), str) and states_no_switch(b))
    .map(ok_answer),
    st.builds(Answer, status=st.just(200), body=st.just(dumps(GOOD)), too_large=st.just(True)),
)
any_answers = st.one_of(
    malformed_answers,
    st.just(ok_answer(dumps(GOOD))),
    st.just(ok_answer(dumps({**GOOD, "killSwitch": True}))),
    st.sampled_from([401, 402, 403, 404, 429, 500, 502, 503]).map(
        lambda s: Answer(status=s, body=b'{"error": {"code": "X"}}')
    ),
    st.just(Answer(status=503, body=b'{"error": {"code": "KILL_SWITCH"}}')),
    st.sampled_from([Failure.TIMEOUT, Failure.NETWORK]).map(lambda f: Answer(failure=f)),
)


@given(
    st.lists(st.tuples(any_answers, st.floats(min_value=0, max_value=100)), max_size=8),
    malformed_answers,
    st.floats(min_value=0, max_value=200),
    st.none() | st.floats(min_value=0, max_value=5000),
)
def test_a_malformed_body_never_makes_a_pod_ready(
    history: list[tuple[Answer, float]],
    malformed: Answer,
    stale_after: float,
    min_credits: float | None,
) -> None:
    state, mono = State(), 1000.0
    for answer, gap in history:
        mono += gap
        state = advance(
            state, classify(answer, NOW), Instant(NOW + mono, mono), min_credits=min_credits
        )
    before = verdict(state, mono, stale_after=stale_after)
    after_state = advance(
        state, classify(malformed, NOW), Instant(NOW + mono, mono), min_credits=min_credits
    )
    after = verdict(after_state, mono, stale_after=stale_after)
    assert after_state.last_outcome == Outcome.INVALID_RESPONSE.value
    # Transient: it may keep a ready verdict while fresh, but never create one.
    if not before.ready:
        assert not after.ready
    if after.ready:
        assert after_state.last_success_mono is not None
        assert mono - after_state.last_success_mono < stale_after
    # And the whoami fields are those of the last good answer, not the malformed one.
    assert after_state.whoami == state.whoami


@given(st.lists(malformed_answers, min_size=1, max_size=6))
def test_only_malformed_bodies_from_the_start_stay_starting(answers: list[Answer]) -> None:
    state = State()
    for step, answer in enumerate(answers):
        state = advance(state, classify(answer, NOW), Instant(NOW + step, step), min_credits=None)
        now = verdict(state, step, stale_after=90)
        # Still starting, and the detail names what the polls got instead of "no answer".
        assert (now.ready, now.reason) == (STARTING.ready, STARTING.reason)
        assert now.detail.startswith(f"no good answer yet: {step + 1} failed poll")
    assert state.whoami is None
    assert state.consecutive_failures == len(answers)


# A stated switch wins: whatever else the body holds, it is never ready.


@st.composite
def bodies_stating_a_switch(draw: st.DrawFn) -> tuple[str, bytes]:
    """Any JSON object with `killSwitch` or `apiAccessRevoked` true among its members, in any
    position, among any other members (the whoami fields right or wrong, duplicates included),
    possibly with garbage or a cut after the switch."""
    switch = draw(st.sampled_from(["killSwitch", "apiAccessRevoked"]))
    others = draw(
        st.lists(st.tuples(st.sampled_from([*KINDS, "padding", switch]), json_values), max_size=8)
    )
    position = draw(st.integers(min_value=0, max_value=len(others)))
    pairs = [*others[:position], (switch, True), *others[position:]]
    text = "{" + ", ".join(f"{json.dumps(k)}: {dumps(v).decode()}" for k, v in pairs) + "}"
    # What follows the switch may be broken or missing: the members before it still count.
    switch_end = text.index(f'"{switch}": true') + len(f'"{switch}": true')
    tail = draw(st.sampled_from(["whole", "cut", "garbage"]))
    if tail == "cut":
        text = text[: draw(st.integers(min_value=switch_end, max_value=len(text)))]
    elif tail == "garbage":
        text = text[:switch_end] + draw(st.text(max_size=20))
    return switch, text.encode()


@given(
    bodies_stating_a_switch(),
    st.lists(any_answers, max_size=6),
    st.floats(min_value=0, max_value=200),
    st.booleans(),
)
@example(("killSwitch", b'{"killSwitch": true, "killSwitch": false}'), [], 90.0, False)
@example(("killSwitch", b'{"killSwitch": false, "killSwitch": true}'), [], 90.0, False)
@example(("apiAccessRevoked", b'{"apiAccessRevoked": true, "creditBalance": null'), [], 0.0, True)
def test_any_json_whose_stated_switch_is_true_is_never_ready(
    case: tuple[str, bytes], history: list[Answer], stale_after: float, too_large: bool
) -> None:
    switch, body = case
    result = classify(Answer(status=200, body=body, too_large=too_large), NOW)
    assert result.outcome.hard_stop
    assert result.outcome in (Outcome.KILL_SWITCH, Outcome.ACCESS_REVOKED)
    if switch == "killSwitch":  # the kill switch is named first when both are stated
        assert result.outcome is Outcome.KILL_SWITCH
    state = State()
    for step, answer in enumerate(history):
        state = advance(state, classify(answer, NOW), Instant(NOW + step, step), min_credits=None)
    state = advance(state, result, Instant(NOW + 10, 10.0), min_credits=None)
    assert not verdict(state, 10.0, stale_after=stale_after).ready
    # And it stays not ready through any transient failure that follows.
    for failure in (Failure.TIMEOUT, Failure.NETWORK):
        state = advance(
            state, classify(Answer(failure=failure), NOW), Instant(NOW + 11, 11.0), min_credits=None
        )
        assert not verdict(state, 11.0, stale_after=stale_after).ready


@given(st.binary(max_size=300))
def test_a_503_kill_switch_is_found_in_any_error_body_that_states_it(padding: bytes) -> None:
    body = b'{"error": {"code": "KILL_SWITCH", "requestId": "r"}, "x": "' + padding.hex().encode()
    result = classify(Answer(status=503, body=body + b'"}'), NOW)
    assert result.outcome is Outcome.KILL_SWITCH
