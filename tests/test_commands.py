"""The command table: each command's settings, its defaults and spellings, and its code."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.commands import COMMANDS, load_command
from sidecar.options import ConfigError
from sidecar.secret import Secret
from sidecar.settings import OPTIONS, Settings, load

KEY = {"LAYERS_API_KEY": "lp_test_k1_FAKEsecretFAKE"}


def test_defaults_are_written_once_in_the_table() -> None:
    from sidecar.commands import COMMANDS

    # A Settings built with no value at all holds the table's defaults, parsed.
    assert load({}, KEY) == Settings(api_key=Secret(KEY["LAYERS_API_KEY"]))
    for command, spec in COMMANDS.items():
        for name in spec.options:
            assert name in OPTIONS, (command, name)
    demo = load_command("demo", {}, {})
    assert (demo.interval, str(demo.listen), str(demo.emulator_listen)) == (
        2,
        "127.0.0.1:8080",
        "127.0.0.1:8081",
    )


def test_the_lifecycle_settings(tmp_path: Path) -> None:

    serve = load_command("serve", {}, {**KEY, "LAYERS_SIDECAR_QUITQUITQUIT": "true"})
    assert serve.quitquitquit is True
    assert serve.ready_file is None
    ready = str(tmp_path / "ready")
    serve = load_command("serve", {"quitquitquit": "true", "ready_file": ready}, KEY)
    assert (serve.quitquitquit, serve.ready_file) == (True, tmp_path / "ready")
    assert load_command("serve", {}, KEY).quitquitquit is False
    for bad in (" ", str(tmp_path / "absent" / "ready"), str(tmp_path)):
        with pytest.raises(ConfigError, match=r"^LAYERS_SIDECAR_READY_FILE: "):
            load_command("serve", {}, {**KEY, "LAYERS_SIDECAR_READY_FILE": bad})


def test_the_demo_and_the_emulator_name_the_emulator_setting_as_they_spell_it() -> None:

    with pytest.raises(ConfigError, match=r"^--listen: "):
        load_command("emulate", {"emulator_listen": "nowhere"}, {})
    with pytest.raises(ConfigError, match=r"^--emulator-listen: "):
        load_command("demo", {"emulator_listen": "nowhere"}, {})
    with pytest.raises(ConfigError, match=r"^LAYERS_EMULATOR_SCENARIO: .*nope.json"):
        load_command("demo", {}, {"LAYERS_EMULATOR_SCENARIO": "/nope.json"})


def test_every_command_names_a_function_the_cli_can_import() -> None:
    """A coroutine for the servers and `check`; a plain function for an offline FILE command."""
    import inspect
    from importlib import import_module

    for name, spec in COMMANDS.items():
        module, _, function = spec.run.partition(":")
        entry = getattr(import_module(module), function)
        assert inspect.iscoroutinefunction(entry) is not spec.files, name
