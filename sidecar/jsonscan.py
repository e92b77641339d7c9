"""Reading an upstream body as JSON, as far as it can be read: a strict decoder (a name given
twice with different values is ambiguous) and the scanner that finds a stated switch in a body
that is malformed, cut short or nested too deep to decode. Pure.

The scanner walks members with `json.decoder.scanstring`, the C string scanner behind
`json.loads`: not documented, but present since Python 2.6 and typed here so a change shows in
mypy; it is what keeps a million-deep body to one pass in C.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final


class Ambiguous(ValueError):
    """A name given twice with different values: the body states two things at once."""


def _canonical(value: object) -> str:
    # `true` and `1` compare equal in Python; as JSON they are different statements.
    return json.dumps(value, sort_keys=True, allow_nan=True)


def _strict_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """object_pairs_hook: a name given twice with different values makes the body malformed."""
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result and _canonical(result[name]) != _canonical(value):
            raise Ambiguous(f"name {name!r} is given twice with different values")
        result[name] = value
    return result


_STRICT: Final = json.JSONDecoder(object_pairs_hook=_strict_object)


def strict_loads(body: bytes) -> Any:
    """json.loads with duplicate names checked; raises ValueError or RecursionError."""
    return _STRICT.decode(body.decode("utf-8"))


@dataclass(frozen=True)
class Decoded:
    """One body through `strict_loads`, once: its value, or why it does not decode. The verdict
    on an answer reads the same body for a stated switch and for its fields; decoding it once
    serves both."""

    value: Any = None
    error: ValueError | RecursionError | None = None


def decode(body: bytes) -> Decoded:
    try:
        return Decoded(strict_loads(body))
    except (ValueError, RecursionError) as error:
        return Decoded(error=error)


_LENIENT: Final = json.JSONDecoder()
# The C scanner behind json.loads: a JSON string starting after its opening quote.
_scanstring: Final[Callable[[str, int], tuple[str, int]]] = json.decoder.scanstring  # type: ignore[attr-defined]
# What skipping a value that does not parse looks at: strings (skipped whole, unterminated at
# the end of a cut body too), runs of brackets, and, outside any bracket, commas. Everything else
# (inside brackets, commas too) is passed over in C.
_SKIP_DEEP: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[{\[]+|[}\]]+', re.DOTALL)
_SKIP_TOP: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[{\[]+|[}\]]+|,', re.DOTALL)
_SPACE: Final = re.compile(r"[ \t\n\r]*")
# A member whose value does not parse (nested too deep, a literal JSON lacks, cut short).
_UNREADABLE: Final = object()


def _text_of(body: bytes) -> str:
    """The body as text, in whichever encoding json.loads would read it (a UTF-8 BOM, UTF-16)."""
    try:
        encoding = json.detect_encoding(body)
    except (TypeError, ValueError):
        encoding = "utf-8"
    return body.decode(encoding, errors="replace").removeprefix("\ufeff")


def _skip_space(text: str, pos: int) -> int:
    if pos >= len(text) or text[pos] not in " \t\n\r":
        return pos
    match = _SPACE.match(text, pos)
    return pos if match is None else match.end()


def _skip_value(text: str, pos: int) -> int:
    """Where the value (or garbage) at `pos` ends: the next `,` or closing bracket outside it.

    Counts brackets without recursing, so a value nested a million deep costs one regex pass.
    """
    depth = 0
    while (match := (_SKIP_DEEP if depth else _SKIP_TOP).search(text, pos)) is not None:
        piece, pos = match.group(), match.end()
        if piece[0] in "{[":
            depth += len(piece)
        elif piece[0] in "}]":
            if len(piece) > depth:
                return match.start() + depth
            depth -= len(piece)
        elif piece == "," and depth == 0:
            return match.start()
    return len(text)


def _members(text: str, pos: int) -> Iterator[tuple[str, Any, int]]:
    """The members of the JSON object whose `{` is just before `pos`: name, value (or
    _UNREADABLE) and where the value starts, in order, as far as they can be told apart.

    A value that does not parse is skipped, not the end: a switch stated after a member nested
    100,000 deep, or after `undefined`, is still found; so is one before a cut or garbage.
    """
    while True:
        pos = _skip_space(text, pos)
        if not text.startswith('"', pos):
            return
        try:
            name, pos = _scanstring(text, pos + 1)
        except ValueError:
            return
        pos = _skip_space(text, pos)
        if not text.startswith(":", pos):
            return
        start = _skip_space(text, pos + 1)
        try:
            value, pos = _LENIENT.raw_decode(text, start)
        except (ValueError, RecursionError):
            value, pos = _UNREADABLE, _skip_value(text, start)
        yield name, value, start
        pos = _skip_space(text, pos)
        if not text.startswith(",", pos):
            pos = _skip_value(text, pos)  # garbage after the value: on to the next member
            if not text.startswith(",", pos):
                return
        pos += 1


def top_level_members(body: bytes) -> Iterator[tuple[str, Any]]:
    """The members of a top-level JSON object, in order, as far as they can be told apart."""
    text = _text_of(body)
    pos = _skip_space(text, 0)
    if text.startswith("{", pos):
        for name, value, _ in _members(text, pos + 1):
            yield name, value


@dataclass(frozen=True)
class Stated:
    """What a body states about the switches, however malformed the rest of it is."""

    kill_switch: bool = False
    access_revoked: bool = False
    kill_switch_error: bool = False


def stated_switches(body: bytes, decoded: Decoded | None = None) -> Stated:
    """Any `true` for a switch at the top level, or an `error.code` of KILL_SWITCH, counts.

    Given twice, once true and once false, the switch counts as stated: in doubt, not ready.
    `decoded`, this body's `decode`, spares the scan when the body decoded strictly: then every
    name given twice had one value, so its members say exactly what the scan would find.
    """
    if decoded is not None and decoded.error is None:
        return _stated_in(decoded.value)
    kill = revoked = error = False
    text = _text_of(body)
    pos = _skip_space(text, 0)
    if not text.startswith("{", pos):
        return Stated()
    for name, value, start in _members(text, pos + 1):
        if name == "killSwitch" and value is True:
            kill = True
        elif name == "apiAccessRevoked" and value is True:
            revoked = True
        elif name == "error" and isinstance(value, dict):
            error = error or value.get("code") == "KILL_SWITCH"
        elif name == "error" and value is _UNREADABLE and text.startswith("{", start):
            inner = _members(text, start + 1)
            error = error or any(n == "code" and v == "KILL_SWITCH" for n, v, _ in inner)
    return Stated(kill, revoked, error)


def _stated_in(value: Any) -> Stated:
    """`stated_switches` of a body that decoded strictly to `value`."""
    if not isinstance(value, dict):
        return Stated()
    error = value.get("error")
    return Stated(
        kill_switch=value.get("killSwitch") is True,
        access_revoked=value.get("apiAccessRevoked") is True,
        kill_switch_error=isinstance(error, dict) and error.get("code") == "KILL_SWITCH",
    )
