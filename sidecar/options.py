"""How a setting is declared: `option(...)` on a `Settings` field gives it its flag, its
variable, its default (as the operator would type it) and its help; `ConfigError` is the one
line an unusable setting becomes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final


class ConfigError(Exception):
    """A setting that cannot be used. `str()` is the one line shown to the operator."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its variable, its default and what it means (for --help)."""

    flag: str
    env: str
    # As the operator would write it; None means unset.
    default: str | None
    help: str
    parse: Callable[[str], object]
    metavar: str = ""
    # A flag that takes no value (`--quitquitquit`); its variable takes true/false.
    switch: bool = False
    # The hub's own variable, read by `hub` before `env`: the hub's upstream, address and
    # timeout differ from the sidecars', and one ConfigMap feeds both.
    hub_env: str | None = None
    # The Settings field; filled in when OPTIONS is derived from the fields.
    name: str = ""


# Where a Settings field keeps its Option.
OPTION: Final = "option"


def option(
    flag: str,
    env: str,
    default: str | None,
    help: str,
    parse: Callable[[str], object],
    metavar: str = "",
    *,
    switch: bool = False,
    hub_env: str | None = None,
) -> Any:
    """A Settings field declared with its option; its default is the table's, parsed."""
    declared = Option(flag, env, default, help, parse, metavar, switch, hub_env)
    parsed = None if default is None else parse(default)
    return field(default=parsed, metadata={OPTION: declared})
