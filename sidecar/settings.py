"""One frozen Settings object, built once from flags and environment variables, validated once.

A flag beats its variable, the variable beats the default. Every refusal is a `ConfigError` that
names the setting in one line; the CLI turns it into exit code 2.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit

DEFAULT_API_URL: Final = "https://api.layers.com"
DEFAULT_LISTEN: Final = "0.0.0.0:8080"

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?\s*$")
E = TypeVar("E", bound=StrEnum)

_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class ConfigError(Exception):
    """A setting that cannot be used. `str()` is the one line shown to the operator."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting


class AuthScheme(StrEnum):
    X_API_KEY = "x-api-key"
    BEARER = "bearer"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def parse_duration(text: str) -> float:
    """`250ms`, `10s`, `2m`, `1h` or a bare number of seconds → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use 250ms, 10s, 2m, 1h or seconds)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(text: str) -> Listen:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (for example 0.0.0.0:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return Listen(host, int(port))


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback's locals."""

    __slots__ = ("_value",)

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


@dataclass(frozen=True)
class Settings:
    api_key: Secret | None = None
    api_key_file: Path | None = None
    api_url: str = DEFAULT_API_URL
    auth_scheme: AuthScheme = AuthScheme.X_API_KEY
    listen: Listen = Listen("0.0.0.0", 8080)
    interval: float = 30.0
    timeout: float = 10.0
    stale_after: float = 90.0
    min_credits: float | None = None
    deadline: float = 60.0
    log_format: LogFormat = LogFormat.JSON
    log_level: LogLevel = LogLevel.INFO
    fallback_api_url: str | None = None
    # Fleet mode (`hub`).
    ttl: float = 5.0
    max_keys: int = 10_000
    max_upstream_rate: float = 20.0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    @property
    def whoami_url(self) -> str:
        return self.api_url.rstrip("/") + "/v1/whoami"

    @property
    def fallback_whoami_url(self) -> str | None:
        if self.fallback_api_url is None:
            return None
        return self.fallback_api_url.rstrip("/") + "/v1/whoami"


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its variable, its default and what it means (for --help)."""

    name: str
    flag: str
    env: str
    default: str | None
    help: str


OPTIONS: Final = {
    option.name: option
    for option in (
        Option(
            "api_key_file",
            "--api-key-file",
            "LAYERS_API_KEY_FILE",
            None,
            "file holding the key (a mounted Secret); re-read on every poll, so a rotated Secret "
            "takes effect without a restart. The key itself comes from LAYERS_API_KEY, which has "
            "no flag on purpose: a flag shows in ps.",
        ),
        Option(
            "api_url",
            "--api-url",
            "LAYERS_API_URL",
            DEFAULT_API_URL,
            "base URL of the Layers API; the call is {api-url}/v1/whoami",
        ),
        Option(
            "auth_scheme",
            "--auth-scheme",
            "LAYERS_AUTH_SCHEME",
            "x-api-key",
            "x-api-key sends X-Api-Key: <key>; bearer sends Authorization: Bearer <key>",
        ),
        Option(
            "listen",
            "--listen",
            "LAYERS_SIDECAR_LISTEN",
            DEFAULT_LISTEN,
            "HOST:PORT of the HTTP server (/readyz, /livez, /status, /metrics)",
        ),
        Option("interval", "--interval", "LAYERS_SIDECAR_INTERVAL", "30s", "time between polls"),
        Option("timeout", "--timeout", "LAYERS_SIDECAR_TIMEOUT", "10s", "limit for one request"),
        Option(
            "stale_after",
            "--stale-after",
            "LAYERS_SIDECAR_STALE_AFTER",
            "90s",
            "how long transient failures may keep the last good verdict; 0 fails on the first",
        ),
        Option(
            "min_credits",
            "--min-credits",
            "LAYERS_SIDECAR_MIN_CREDITS",
            None,
            "when set, readiness also needs creditBalance >= N",
        ),
        Option(
            "deadline",
            "--deadline",
            "LAYERS_SIDECAR_DEADLINE",
            "60s",
            "how long check retries transient failures; 0 means one attempt",
        ),
        Option(
            "log_format",
            "--log-format",
            "LAYERS_SIDECAR_LOG_FORMAT",
            "json",
            "json (one object a line) or console",
        ),
        Option(
            "log_level",
            "--log-level",
            "LAYERS_SIDECAR_LOG_LEVEL",
            "info",
            "debug, info, warning or error",
        ),
        Option(
            "fallback_api_url",
            "--fallback-api-url",
            "LAYERS_FALLBACK_API_URL",
            None,
            "base URL called in the same poll when --api-url cannot be reached or times out "
            "(the real API, behind a hub); an HTTP answer, 5xx included, is never retried there",
        ),
        Option(
            "ttl",
            "--ttl",
            "LAYERS_HUB_TTL",
            "5s",
            "how long one upstream answer serves every caller holding the same key",
        ),
        Option(
            "max_keys",
            "--max-keys",
            "LAYERS_HUB_MAX_KEYS",
            "10000",
            "distinct keys remembered; the least recently used go first",
        ),
        Option(
            "max_upstream_rate",
            "--max-upstream-rate",
            "LAYERS_HUB_MAX_UPSTREAM_RATE",
            "20",
            "upstream calls per second, all keys together; a miss past it is answered "
            "503 HUB_BUSY with Retry-After",
        ),
        Option(
            "tls_cert_file",
            "--tls-cert-file",
            "LAYERS_HUB_TLS_CERT_FILE",
            None,
            "PEM certificate (chain): serve HTTPS; needs --tls-key-file",
        ),
        Option(
            "tls_key_file",
            "--tls-key-file",
            "LAYERS_HUB_TLS_KEY_FILE",
            None,
            "PEM private key of --tls-cert-file",
        ),
    )
}

DURATIONS: Final = frozenset({"interval", "timeout", "stale_after", "deadline"})
# The most keys a hub may be told to remember: beyond this, memory, not the flag, is the limit.
MAX_KEYS_CEILING: Final = 10_000_000


def _choice(kind: type[E], text: str) -> E:
    try:
        return kind(text.strip().lower())
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ValueError(f"{text!r} is not one of {allowed}") from None


def _host_ok(host: str) -> bool:
    """A DNS name (labels of 1-63 letters, digits, `-` or `_`) or an IP address."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        labels = host.removesuffix(".").split(".")
        return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels)
    return True


def _url(text: str) -> str:
    # Every way this URL could never be reached is refused here, at start-up, rather than
    # showing as a network_error seconds later.
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} must be a base URL without query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError("the URL must not hold credentials (the key is sent in a header)")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"{text!r} has an impossible port (use 1-65535)")
    if not _host_ok(parts.hostname):
        raise ValueError(f"{text!r} has an impossible host {parts.hostname!r}")
    return text


def _credits(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a number")
    return value


def _positive_duration(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    return seconds


def _count(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= MAX_KEYS_CEILING:
        raise ValueError(f"{text!r} must be between 1 and {MAX_KEYS_CEILING}")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} must be a number of calls per second above 0")
    return value


def _parse(name: str, text: str) -> object:
    if name in ("interval", "timeout", "ttl"):
        return _positive_duration(text)
    if name in DURATIONS:
        return parse_duration(text)
    parsers: dict[str, Callable[[str], object]] = {
        "api_key_file": Path,
        "api_url": _url,
        "fallback_api_url": _url,
        "max_keys": _count,
        "max_upstream_rate": _rate,
        "tls_cert_file": Path,
        "tls_key_file": Path,
        "auth_scheme": lambda t: _choice(AuthScheme, t),
        "listen": parse_listen,
        "min_credits": _credits,
        "log_format": lambda t: _choice(LogFormat, t),
        "log_level": lambda t: _choice(LogLevel, t),
    }
    return parsers[name](text)


def load(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    names: frozenset[str] = frozenset(OPTIONS),
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Builds Settings from the flags given (None when absent) and the environment.

    `names` limits the settings read to those the command uses; `overrides` replaces defaults
    (the demo's shorter interval), still beaten by a flag or a variable.
    """
    values: dict[str, object] = {}
    for name in sorted(names):
        option = OPTIONS[name]
        text = flags.get(name)
        source = option.flag
        if text is None:
            text = environ.get(option.env) or None
            source = option.env
        if text is None:
            text = (overrides or {}).get(name, option.default)
            source = f"{option.flag} (default)"
        if text is None:
            continue
        try:
            values[name] = _parse(name, text)
        except ValueError as error:
            raise ConfigError(source, str(error)) from None

    if (values.get("tls_cert_file") is None) != (values.get("tls_key_file") is None):
        raise ConfigError("--tls-cert-file", "HTTPS needs both --tls-cert-file and --tls-key-file")

    key = environ.get("LAYERS_API_KEY") or None
    if "api_key_file" in names:
        if key is not None and values.get("api_key_file") is not None:
            raise ConfigError(
                "LAYERS_API_KEY",
                "set either LAYERS_API_KEY or LAYERS_API_KEY_FILE/--api-key-file, not both",
            )
        if key is None and values.get("api_key_file") is None:
            raise ConfigError(
                "LAYERS_API_KEY", "no key: set LAYERS_API_KEY or LAYERS_API_KEY_FILE/--api-key-file"
            )
        if key is not None:
            values["api_key"] = Secret(key.strip())
    return Settings(**values)  # type: ignore[arg-type]
