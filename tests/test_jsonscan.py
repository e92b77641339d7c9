"""The JSON reading of upstream bodies (`jsonscan`): properties of the switch search
(`stated_switches`) over bodies hypothesis makes up.

A switch stated at the top level is found whatever comes before it (a value that does not parse,
nesting too deep to parse) and in any encoding json.loads reads; and a switch that is not stated
(false, nested deeper, or only quoted inside a string) is never found.
"""

from __future__ import annotations

import json
from typing import Any, Final

from hypothesis import given
from hypothesis import strategies as st

from sidecar.jsonscan import Stated, decode, stated_switches
from tests.strategies import json_values
from tests.support import WHOAMI as GOOD

# Values that stop json.loads, written as a member's value.
UNPARSEABLE: Final = (
    "undefined",
    "[" * 5000 + "]" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    '"bad \\q escape"',
    "[1, 2,, 3]",
    "{'single': 'quotes'}",
    "0x1F",
    '"unterminated, \\"still\\" inside: \\"killSwitch\\": false',
)
ENCODINGS: Final = ("utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32")
NAMES: Final = ("killSwitch", "apiAccessRevoked")


def member(name: str, value: Any) -> str:
    return f"{json.dumps(name)}: {json.dumps(value)}"


@given(
    before=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    garbage=st.sampled_from(UNPARSEABLE),
    name=st.sampled_from(NAMES),
    encoding=st.sampled_from(ENCODINGS),
)
def test_a_switch_stated_after_anything_is_found(
    before: dict[str, Any], garbage: str, name: str, encoding: str
) -> None:
    parts = [member(k, v) for k, v in before.items() if k not in NAMES]
    if not garbage.startswith('"unterminated'):  # an unterminated string swallows the rest
        parts.append(f'"junk": {garbage}')
    parts.append(member(name, True))
    body = ("{" + ", ".join(parts) + "}").encode(encoding)
    stated = stated_switches(body)
    assert (stated.kill_switch, stated.access_revoked) == (
        name == "killSwitch",
        name == "apiAccessRevoked",
    )


@given(
    extra=st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    quoted=st.sampled_from(
        [
            '", "killSwitch": true, "x": "',
            '"killSwitch": true',
            '{"error": {"code": "KILL_SWITCH"}}',
        ]
    ),
    garbage=st.sampled_from(UNPARSEABLE[:4]),
)
def test_a_switch_only_quoted_nested_or_false_is_never_found(
    extra: dict[str, Any], quoted: str, garbage: str
) -> None:
    body = {**extra, **GOOD, "note": quoted, "nested": {"killSwitch": True, "error": quoted}}
    text = json.dumps(body)
    for candidate in (text, text[:-1] + f', "junk": {garbage}}}', text[: len(text) // 2]):
        assert stated_switches(candidate.encode()) == Stated()


SWITCH_VALUES: Final = st.sampled_from([True, False, 1, "true", None, {"code": "KILL_SWITCH"}])


@given(
    members=st.lists(
        st.tuples(
            st.sampled_from([*NAMES, "error", "code", "x"]),
            st.one_of(SWITCH_VALUES, json_values, st.fixed_dictionaries({"code": json_values})),
        ),
        max_size=6,
    ),
    top=st.one_of(st.none(), json_values),
)
def test_a_decoded_body_states_what_the_scan_finds(
    members: list[tuple[str, Any]], top: Any
) -> None:
    # Names given twice (with the same value or not), nested error objects, non-object bodies:
    # the shortcut through the strict decoding must agree with the scan on every one.
    text = "{" + ", ".join(member(name, value) for name, value in members) + "}"
    for body in (text.encode(), json.dumps(top).encode(), text.encode("utf-8-sig")):
        assert stated_switches(body, decode(body)) == stated_switches(body)
