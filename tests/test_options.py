"""How a setting is declared: one `option(...)` per Settings field gives the table its row."""

from __future__ import annotations

from dataclasses import fields

from sidecar.options import ConfigError
from sidecar.settings import OPTIONS, Settings


def test_every_setting_but_the_key_is_declared_once_as_an_option() -> None:
    declared = {f.name for f in fields(Settings)} - {"api_key"}
    assert set(OPTIONS) == declared
    assert all(option.name == name for name, option in OPTIONS.items())
    assert len({option.flag for option in OPTIONS.values()}) == len(OPTIONS)
    assert len({option.env for option in OPTIONS.values()}) == len(OPTIONS)


def test_a_field_s_default_is_its_option_s_default_parsed() -> None:
    defaults = Settings()
    for name, option in OPTIONS.items():
        expected = None if option.default is None else option.parse(option.default)
        assert getattr(defaults, name) == expected, name


def test_a_config_error_is_one_line_naming_the_setting() -> None:
    error = ConfigError("--interval", "'x' is not a duration")
    assert str(error) == "--interval: 'x' is not a duration"
    assert error.setting == "--interval"
