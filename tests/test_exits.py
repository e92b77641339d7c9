"""Every exit code of the command, once: each means one thing."""

from __future__ import annotations

from sidecar import exits


def test_exit_codes_are_distinct_and_the_configuration_one_is_2() -> None:
    codes = {name: value for name, value in vars(exits).items() if name.startswith("EXIT_")}
    assert len(set(codes.values())) == len(codes)
    assert codes["EXIT_CONFIG"] == 2
    assert codes["EXIT_READY"] == 0
