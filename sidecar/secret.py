"""`Secret`: the key as a value that never shows itself. The core owns it; everyone imports it."""

from __future__ import annotations


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback's locals."""

    # __weakref__: what is derived from a key (redact's fragments) may live only as long as it.
    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
