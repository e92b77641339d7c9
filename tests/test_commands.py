"""The command table: each command's settings, its defaults and spellings, and its code."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.commands import COMMANDS, load, load_command
from sidecar.options import ConfigError
from sidecar.secret import Secret
from sidecar.settings import OPTIONS, Settings

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


# One ConfigMap feeding the hub and the sidecars in fleet mode: the sidecars' upstream is the
# hub, the hub's is Layers; the hub listens elsewhere and calls Layers with a shorter timeout.
FLEET_ENV = {
    **KEY,
    "LAYERS_API_URL": "https://hub.example.invalid:8443",
    "LAYERS_SIDECAR_LISTEN": "0.0.0.0:9476",
    "LAYERS_SIDECAR_TIMEOUT": "10s",
    "LAYERS_HUB_API_URL": "https://api.layers.com",
    "LAYERS_HUB_LISTEN": "0.0.0.0:8443",
    "LAYERS_HUB_TIMEOUT": "5s",
}


def test_the_hub_reads_its_own_variables_before_the_shared_ones() -> None:
    hub = load_command("hub", {}, FLEET_ENV)
    assert (hub.api_url, str(hub.listen), hub.timeout) == (
        "https://api.layers.com",
        "0.0.0.0:8443",
        5,
    )
    serve = load_command("serve", {}, FLEET_ENV)
    assert (serve.api_url, str(serve.listen), serve.timeout) == (
        "https://hub.example.invalid:8443",
        "0.0.0.0:9476",
        10,
    )


def test_a_hub_flag_beats_the_hub_variable_which_beats_the_shared_one() -> None:
    assert load_command("hub", {"timeout": "2s"}, FLEET_ENV).timeout == 2
    shared_only = {k: v for k, v in FLEET_ENV.items() if not k.startswith("LAYERS_HUB_")}
    hub = load_command("hub", {}, shared_only)
    assert (hub.api_url, hub.timeout) == ("https://hub.example.invalid:8443", 10)
    # An empty hub variable counts as unset, like every other variable.
    assert load_command("hub", {}, {**FLEET_ENV, "LAYERS_HUB_TIMEOUT": ""}).timeout == 10
    assert load_command("hub", {}, {}).timeout == 10


def test_a_bad_hub_variable_is_named_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_command("hub", {}, {**FLEET_ENV, "LAYERS_HUB_TIMEOUT": "soon"})
    assert str(caught.value).startswith("LAYERS_HUB_TIMEOUT: ")


def test_only_the_hub_reads_the_hub_variables() -> None:
    for command, spec in COMMANDS.items():
        if command != "hub":
            assert not spec.hub_env, command
    hub_variables = {o.hub_env for o in OPTIONS.values() if o.hub_env}
    assert hub_variables == {"LAYERS_HUB_API_URL", "LAYERS_HUB_LISTEN", "LAYERS_HUB_TIMEOUT"}
    # No hub variable is also some option's own variable.
    assert not hub_variables & {o.env for o in OPTIONS.values()}
