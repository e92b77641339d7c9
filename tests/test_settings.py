from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.commands import load
from sidecar.options import ConfigError
from sidecar.settings import AuthScheme, Listen, LogFormat

KEY = {"LAYERS_API_KEY": "lp_test_k1_FAKEsecretFAKE"}


def test_defaults_match_the_spec() -> None:
    settings = load({}, KEY)
    assert settings.api_url == "https://api.layers.com"
    assert settings.whoami_url == "https://api.layers.com/v1/whoami"
    assert settings.auth_scheme is AuthScheme.X_API_KEY
    assert settings.listen == Listen("0.0.0.0", 8080)
    assert (settings.interval, settings.timeout, settings.stale_after) == (30, 10, 90)
    assert settings.deadline == 60
    assert settings.min_credits is None
    assert settings.log_format is LogFormat.JSON


def test_flag_beats_variable_beats_default() -> None:
    environ = {**KEY, "LAYERS_SIDECAR_INTERVAL": "5s", "LAYERS_SIDECAR_TIMEOUT": "3s"}
    settings = load({"interval": "2m"}, environ)
    assert settings.interval == 120  # the flag
    assert settings.timeout == 3  # the variable
    assert settings.stale_after == 90  # the default


def test_every_setting_reads_its_variable() -> None:
    environ = {
        **KEY,
        "LAYERS_API_URL": "http://127.0.0.1:9/base/",
        "LAYERS_AUTH_SCHEME": "bearer",
        "LAYERS_SIDECAR_LISTEN": "127.0.0.1:9000",
        "LAYERS_SIDECAR_INTERVAL": "1s",
        "LAYERS_SIDECAR_TIMEOUT": "500ms",
        "LAYERS_SIDECAR_STALE_AFTER": "0",
        "LAYERS_SIDECAR_MIN_CREDITS": "100",
        "LAYERS_SIDECAR_DEADLINE": "0",
        "LAYERS_SIDECAR_LOG_FORMAT": "console",
        "LAYERS_SIDECAR_LOG_LEVEL": "debug",
    }
    settings = load({}, environ)
    assert settings.whoami_url == "http://127.0.0.1:9/base/v1/whoami"
    assert settings.auth_scheme is AuthScheme.BEARER
    assert str(settings.listen) == "127.0.0.1:9000"
    assert (settings.interval, settings.timeout, settings.stale_after) == (1, 0.5, 0)
    assert (settings.min_credits, settings.deadline) == (100, 0)
    assert settings.log_format is LogFormat.CONSOLE


def test_key_file_and_key_variable_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not both"):
        load({"api_key_file": str(tmp_path / "key")}, KEY)


def test_a_key_is_required_and_an_empty_variable_counts_as_unset() -> None:
    with pytest.raises(ConfigError, match="no key"):
        load({}, {"LAYERS_API_KEY": ""})
    settings = load({"api_key_file": "/var/run/key"}, {"LAYERS_API_KEY": ""})
    assert settings.api_key is None
    assert settings.api_key_file == Path("/var/run/key")


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"interval": "soon"}, {}, "--interval"),
        ({}, {"LAYERS_SIDECAR_INTERVAL": "0"}, "LAYERS_SIDECAR_INTERVAL"),
        ({"timeout": "-1"}, {}, "--timeout"),
        ({"api_url": "ftp://example"}, {}, "--api-url"),
        ({"api_url": "http://x/?q=1"}, {}, "--api-url"),
        ({"api_url": "http://api.layers.com:99999"}, {}, "--api-url"),
        ({"api_url": "http://api.layers.com:0"}, {}, "--api-url"),
        ({"api_url": "http://api.layers.com:http"}, {}, "--api-url"),
        ({"api_url": "http://exa mple.com"}, {}, "--api-url"),
        ({"api_url": "http://a..b"}, {}, "--api-url"),
        ({"api_url": "http://-a.example"}, {}, "--api-url"),
        ({"api_url": "http://" + "a" * 64 + ".example"}, {}, "--api-url"),
        ({"api_url": "http://user:pw@api.layers.com"}, {}, "--api-url"),
        ({"api_url": "http://127.0.0.1:1/ x"}, {}, "--api-url"),
        ({"api_url": "http://127.0.0.1:1/\tx"}, {}, "--api-url"),
        ({"api_url": "http://127.0.0.1:1/x\n"}, {}, "--api-url"),
        ({"api_url": "http://127.0.0.1:1/\x7f"}, {}, "--api-url"),
        ({"fallback_api_url": "http://127.0.0.1:1/\u2028"}, {}, "--fallback-api-url"),
        ({}, {"LAYERS_API_URL": "https://api.layers.com:65536"}, "LAYERS_API_URL"),
        ({}, {"LAYERS_AUTH_SCHEME": "basic"}, "LAYERS_AUTH_SCHEME"),
        ({"listen": "8080"}, {}, "--listen"),
        ({"listen": "0.0.0.0:99999"}, {}, "--listen"),
        ({"min_credits": "lots"}, {}, "--min-credits"),
        ({"min_credits": "nan"}, {}, "--min-credits"),
        ({}, {"LAYERS_SIDECAR_LOG_LEVEL": "verbose"}, "LAYERS_SIDECAR_LOG_LEVEL"),
        ({"log_format": "xml"}, {}, "--log-format"),
    ],
)
def test_a_bad_value_names_its_setting(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(flags, {**KEY, **environ})
    assert str(caught.value).startswith(f"{named}: ")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        ({"interval": "-1s"}, "--interval: '-1s' must be more than 0"),
        ({"timeout": "-250ms"}, "--timeout: '-250ms' must be more than 0"),
        ({"deadline": "-1"}, "--deadline: '-1' must not be negative"),
    ],
)
def test_a_negative_duration_is_refused_for_its_sign(flags: dict[str, str], problem: str) -> None:
    # Before: "'-1s' is not a duration", as if the spelling were wrong.
    with pytest.raises(ConfigError) as caught:
        load(flags, KEY)
    assert str(caught.value) == problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8081",
        "http://[::1]:1",
        "https://api.layers.com.",
        "http://hub_1.svc:65535",
    ],
)
def test_possible_urls_are_accepted(url: str) -> None:
    assert load({"api_url": url}, KEY).api_url == url


def test_a_command_reads_only_its_own_settings() -> None:
    # `emulate` has no key: a bad poll setting in a shared ConfigMap must not stop it.
    settings = load(
        {}, {"LAYERS_SIDECAR_INTERVAL": "bad"}, names=frozenset({"log_format", "log_level"})
    )
    assert settings.api_key is None


def test_overrides_replace_defaults_but_not_flags_or_variables() -> None:
    overrides = {"interval": "2s", "listen": "127.0.0.1:8080"}
    names = frozenset({"interval", "listen"})
    assert load({}, {}, names=names, overrides=overrides).interval == 2
    environ = {"LAYERS_SIDECAR_INTERVAL": "7s"}
    assert load({}, environ, names=names, overrides=overrides).interval == 7


def test_fleet_mode_defaults_match_the_spec() -> None:
    settings = load({}, KEY)
    assert settings.ttl == 5
    assert settings.max_keys == 10_000
    assert settings.max_upstream_rate == 20
    assert settings.tls_cert_file is None
    assert settings.tls_key_file is None
    assert settings.fallback_api_url is None
    assert settings.fallback_whoami_url is None


def test_fleet_mode_settings_read_their_variables() -> None:
    environ = {
        **KEY,
        "LAYERS_HUB_TTL": "250ms",
        "LAYERS_HUB_MAX_KEYS": "3",
        "LAYERS_HUB_MAX_UPSTREAM_RATE": "0.5",
        "LAYERS_HUB_TLS_CERT_FILE": "/tls/tls.crt",
        "LAYERS_HUB_TLS_KEY_FILE": "/tls/tls.key",
        "LAYERS_FALLBACK_API_URL": "https://api.layers.com/",
    }
    settings = load({}, environ)
    assert (settings.ttl, settings.max_keys, settings.max_upstream_rate) == (0.25, 3, 0.5)
    assert settings.tls_cert_file == Path("/tls/tls.crt")
    assert settings.tls_key_file == Path("/tls/tls.key")
    assert settings.fallback_whoami_url == "https://api.layers.com/v1/whoami"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        ({"ttl": "0"}, "--ttl"),
        ({"max_keys": "0"}, "--max-keys"),
        ({"max_keys": "1e4"}, "--max-keys"),
        ({"max_upstream_rate": "0"}, "--max-upstream-rate"),
        ({"max_upstream_rate": "inf"}, "--max-upstream-rate"),
        ({"fallback_api_url": "api.layers.com"}, "--fallback-api-url"),
        ({"tls_cert_file": "/tls/tls.crt"}, "--tls-cert-file"),
        ({"tls_key_file": "/tls/tls.key"}, "--tls-cert-file"),
    ],
)
def test_a_bad_fleet_mode_value_names_its_setting(flags: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(flags, KEY)
    assert str(caught.value).startswith(f"{named}: ")


@pytest.mark.parametrize("text", ["abc", "-5", "nan", "inf"])
def test_min_credits_is_a_number_of_0_or_more(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^--min-credits: "):
        load({"min_credits": text}, KEY)
