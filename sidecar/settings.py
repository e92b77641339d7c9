"""One frozen Settings object, built once from flags and environment variables, validated once.

A flag beats its variable, the variable beats the default. Every refusal is a `ConfigError` that
names the setting in one line; the CLI turns it into exit code 2.

One path for every setting of every command. `OPTIONS` is the table: flag, variable, default
(written once, as the operator would type it; `Settings`' field defaults are parsed from it),
help, parser. `COMMANDS` says which options each command takes, and its own defaults or flag
spellings. A new command declares itself by one `Command(...)` entry naming its options (adding
any new ones to `OPTIONS` and a field to `Settings`); the CLI builds its flags, `--help`, variable
reading and one-line errors from that entry, and imports the command's code only when it runs.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .scenario import Scenario

# The exit code of every command for a setting that cannot be used (and of `check` for a key
# that cannot be read).
EXIT_CONFIG: Final = 2

_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Signed, so that "-1s" is read as a duration and refused for its sign, not its spelling.
_DURATION = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d+)?|\.\d+))\s*(ms|s|m|h)?\s*$")
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


class InjectMode(StrEnum):
    NATIVE = "native"
    CLASSIC = "classic"


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def _seconds(text: str) -> float:
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (use 250ms, 10s, 2m, 1h or seconds)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def parse_duration(text: str) -> float:
    """`250ms`, `10s`, `2m`, `1h` or a bare number of seconds → seconds; 0 or more."""
    seconds = _seconds(text)
    if seconds < 0:
        raise ValueError(f"{text!r} must not be negative")
    return seconds


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
    if any(c.isspace() or not c.isprintable() for c in text):
        # urlsplit drops tabs and newlines silently, and aiohttp would send a space as it is.
        raise ValueError(f"{text!r} holds a space or a control character")
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
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a number of credits, 0 or more")
    return value


def _positive_duration(text: str) -> float:
    seconds = _seconds(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be more than 0")
    return seconds


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def _switch(text: str) -> bool:
    word = text.strip().lower()
    if word in _TRUE | _FALSE:
        return word in _TRUE
    raise ValueError(f"{text!r} is not one of true, false (or 1, 0)")


# A scenario file is a small JSON object; anything larger is not one.
_MAX_SCENARIO_BYTES: Final = 1024 * 1024


def _scenario_file(text: str) -> Scenario:
    # Imported here: only `emulate` and `demo` read a scenario, and `check` starts faster without.
    from .scenario import load_scenario

    path = _path(text)
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_SCENARIO_BYTES + 1)
    except OSError as error:
        raise ValueError(f"{path}: {error.strerror or error}") from None
    if len(data) > _MAX_SCENARIO_BYTES:
        raise ValueError(f"{path}: larger than 1 MiB")
    try:
        return load_scenario(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


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


def _ready_file(text: str) -> Path:
    # Refused at start rather than failing at the first verdict: the directory is the shared
    # volume, and a typo in its path would leave the worker waiting for a file never written.
    path = _path(text)
    if not path.parent.is_dir():
        raise ValueError(f"{str(path.parent)!r} is not a directory (mount the shared volume there)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ValueError(f"{str(path.parent)!r} is not writable by this user")
    if path.is_dir():
        raise ValueError(f"{text!r} is a directory; name a file in it")
    return path


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _secret_name(text: str) -> str:
    name = text.strip()
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"{text!r} is not a Secret name (lower-case letters, digits, - and .)")
    return name


def _secret_key(text: str) -> str:
    key = text.strip()
    if len(key) > 253 or not _SECRET_KEY.fullmatch(key) or key in (".", ".."):
        raise ValueError(f"{text!r} is not a key of a Secret (letters, digits, -, _ and .)")
    return key


def _image(text: str) -> str:
    image = text.strip()
    if not image or any(c.isspace() or not c.isprintable() for c in image):
        raise ValueError(f"{text!r} is not an image reference")
    return image


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port (1-65535)")
    return int(text)


def _path(text: str) -> Path:
    if not text.strip():
        raise ValueError("the path is empty")
    return Path(text)


# The most keys a hub may be told to remember: beyond this, memory, not the flag, is the limit.
MAX_KEYS_CEILING: Final = 10_000_000


@dataclass(frozen=True)
class Option:
    """One setting: its flag, its variable, its default and what it means (for --help)."""

    name: str
    flag: str
    env: str
    # As the operator would write it; None means unset.
    default: str | None
    help: str
    parse: Callable[[str], object]
    metavar: str = ""
    # A flag that takes no value (`--quitquitquit`); its variable takes true/false.
    switch: bool = False


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
            _path,
            "PATH",
        ),
        Option(
            "api_url",
            "--api-url",
            "LAYERS_API_URL",
            "https://api.layers.com",
            "base URL of the Layers API; the call is {api-url}/v1/whoami",
            _url,
            "URL",
        ),
        Option(
            "auth_scheme",
            "--auth-scheme",
            "LAYERS_AUTH_SCHEME",
            "x-api-key",
            "x-api-key sends X-Api-Key: <key>; bearer sends Authorization: Bearer <key>",
            lambda t: _choice(AuthScheme, t),
            "SCHEME",
        ),
        Option(
            "listen",
            "--listen",
            "LAYERS_SIDECAR_LISTEN",
            "0.0.0.0:8080",
            "HOST:PORT of the HTTP server (/readyz, /livez, /status, /metrics)",
            parse_listen,
            "HOST:PORT",
        ),
        Option(
            "interval",
            "--interval",
            "LAYERS_SIDECAR_INTERVAL",
            "30s",
            "time between polls",
            _positive_duration,
            "DURATION",
        ),
        Option(
            "timeout",
            "--timeout",
            "LAYERS_SIDECAR_TIMEOUT",
            "10s",
            "limit for one whoami request",
            _positive_duration,
            "DURATION",
        ),
        Option(
            "stale_after",
            "--stale-after",
            "LAYERS_SIDECAR_STALE_AFTER",
            "90s",
            "how long transient failures may keep the last good verdict; 0 fails on the first",
            parse_duration,
            "DURATION",
        ),
        Option(
            "min_credits",
            "--min-credits",
            "LAYERS_SIDECAR_MIN_CREDITS",
            None,
            "when set, readiness also needs creditBalance >= N",
            _credits,
            "N",
        ),
        Option(
            "deadline",
            "--deadline",
            "LAYERS_SIDECAR_DEADLINE",
            "60s",
            "how long check retries transient failures; 0 means one attempt",
            parse_duration,
            "DURATION",
        ),
        Option(
            "quitquitquit",
            "--quitquitquit",
            "LAYERS_SIDECAR_QUITQUITQUIT",
            "false",
            "enable POST /quitquitquit, which answers 200 and exits 0: how a Job's main "
            "container ends a classic (non-native) sidecar",
            _switch,
            switch=True,
        ),
        Option(
            "ready_file",
            "--ready-file",
            "LAYERS_SIDECAR_READY_FILE",
            None,
            "a file that exists exactly while ready (written and removed atomically), for "
            "workers that no probe reaches: they check it before taking work",
            _ready_file,
            "PATH",
        ),
        Option(
            "log_format",
            "--log-format",
            "LAYERS_SIDECAR_LOG_FORMAT",
            "json",
            "json (one object a line) or console",
            lambda t: _choice(LogFormat, t),
            "FORMAT",
        ),
        Option(
            "log_level",
            "--log-level",
            "LAYERS_SIDECAR_LOG_LEVEL",
            "info",
            "debug, info, warning or error",
            lambda t: _choice(LogLevel, t),
            "LEVEL",
        ),
        Option(
            "fallback_api_url",
            "--fallback-api-url",
            "LAYERS_FALLBACK_API_URL",
            None,
            "base URL called in the same poll when --api-url cannot be reached or times out "
            "(the real API, behind a hub); an HTTP answer, 5xx included, is never retried there",
            _url,
            "URL",
        ),
        Option(
            "ttl",
            "--ttl",
            "LAYERS_HUB_TTL",
            "5s",
            "how long one upstream answer serves every caller holding the same key",
            _positive_duration,
            "DURATION",
        ),
        Option(
            "max_keys",
            "--max-keys",
            "LAYERS_HUB_MAX_KEYS",
            "10000",
            "distinct keys remembered; the least recently used go first",
            _count,
            "N",
        ),
        Option(
            "max_upstream_rate",
            "--max-upstream-rate",
            "LAYERS_HUB_MAX_UPSTREAM_RATE",
            "20",
            "upstream calls per second, all keys together; a miss past it is answered "
            "503 HUB_BUSY with Retry-After",
            _rate,
            "PER_SECOND",
        ),
        Option(
            "tls_cert_file",
            "--tls-cert-file",
            "LAYERS_HUB_TLS_CERT_FILE",
            None,
            "PEM certificate (chain): serve HTTPS; needs --tls-key-file",
            _path,
            "PATH",
        ),
        Option(
            "tls_key_file",
            "--tls-key-file",
            "LAYERS_HUB_TLS_KEY_FILE",
            None,
            "PEM private key of --tls-cert-file",
            _path,
            "PATH",
        ),
        Option(
            "inject_mode",
            "--mode",
            "LAYERS_INJECT_MODE",
            "native",
            "native: a waiting check init container, then serve as a native sidecar "
            "(Kubernetes 1.29+); classic: the same init container, and serve as an ordinary "
            "container (left out of pods that run to completion, such as a Job's)",
            lambda t: _choice(InjectMode, t),
            "MODE",
        ),
        Option(
            "inject_secret",
            "--secret",
            "LAYERS_INJECT_SECRET",
            "layers-api-key",
            "the Secret holding the key (never created by the wiring)",
            _secret_name,
            "NAME",
        ),
        Option(
            "inject_secret_key",
            "--secret-key",
            "LAYERS_INJECT_SECRET_KEY",
            "api-key",
            "the key inside --secret",
            _secret_key,
            "KEY",
        ),
        Option(
            "inject_image",
            "--image",
            "LAYERS_INJECT_IMAGE",
            None,
            "image of the injected containers; unset: this version's image",
            _image,
            "IMAGE",
        ),
        Option(
            "inject_port",
            "--port",
            "LAYERS_INJECT_PORT",
            "9476",
            "where the injected serve listens; when the pod already declares or probes it, the "
            "smallest free port above it",
            _port,
            "PORT",
        ),
        Option(
            "emulator_listen",
            "--emulator-listen",
            "LAYERS_EMULATOR_LISTEN",
            "127.0.0.1:8081",
            "HOST:PORT of the emulator",
            parse_listen,
            "HOST:PORT",
        ),
        Option(
            "scenario",
            "--scenario",
            "LAYERS_EMULATOR_SCENARIO",
            None,
            "JSON file with the emulator's starting scenario (fields as in "
            "POST /_emulator/scenario)",
            _scenario_file,
            "FILE",
        ),
    )
}


def _default(name: str) -> Any:
    """A Settings field's default: the table's, parsed, so defaults are written once."""
    option = OPTIONS[name]
    return None if option.default is None else option.parse(option.default)


@dataclass(frozen=True)
class Settings:
    api_key: Secret | None = None
    api_key_file: Path | None = _default("api_key_file")
    api_url: str = _default("api_url")
    auth_scheme: AuthScheme = _default("auth_scheme")
    listen: Listen = _default("listen")
    interval: float = _default("interval")
    timeout: float = _default("timeout")
    stale_after: float = _default("stale_after")
    min_credits: float | None = _default("min_credits")
    deadline: float = _default("deadline")
    quitquitquit: bool = _default("quitquitquit")
    ready_file: Path | None = _default("ready_file")
    log_format: LogFormat = _default("log_format")
    log_level: LogLevel = _default("log_level")
    emulator_listen: Listen = _default("emulator_listen")
    scenario: Scenario | None = _default("scenario")
    fallback_api_url: str | None = _default("fallback_api_url")
    # Fleet mode (`hub`).
    ttl: float = _default("ttl")
    max_keys: int = _default("max_keys")
    max_upstream_rate: float = _default("max_upstream_rate")
    tls_cert_file: Path | None = _default("tls_cert_file")
    tls_key_file: Path | None = _default("tls_key_file")
    # Wiring workloads (`inject`, `injector`).
    inject_mode: InjectMode = _default("inject_mode")
    inject_secret: str = _default("inject_secret")
    inject_secret_key: str = _default("inject_secret_key")
    inject_image: str | None = _default("inject_image")
    inject_port: int = _default("inject_port")

    @property
    def whoami_url(self) -> str:
        return self.api_url.rstrip("/") + "/v1/whoami"

    @property
    def fallback_whoami_url(self) -> str | None:
        if self.fallback_api_url is None:
            return None
        return self.fallback_api_url.rstrip("/") + "/v1/whoami"


@dataclass(frozen=True)
class Command:
    """What one command takes: its options (names in OPTIONS), and where it differs from the
    table: its own defaults (the demo polls faster), a flag spelt differently for it, or what
    an option means for it (its --help)."""

    description: str
    options: frozenset[str]
    defaults: Mapping[str, str] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)
    helps: Mapping[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> str:
        return self.flags.get(name, OPTIONS[name].flag)


_KEY: Final = frozenset({"api_key_file", "api_url", "auth_scheme"})
_POLL: Final = frozenset({"interval", "timeout", "min_credits", "log_format", "log_level"})
_LOGS: Final = frozenset({"log_format", "log_level"})
# What a wiring takes: where the key is, the injected containers' image and port, and the
# settings passed on to them.
_WIRING: Final = frozenset(
    {
        "inject_mode",
        "inject_secret",
        "inject_secret_key",
        "inject_image",
        "inject_port",
        "api_url",
        "fallback_api_url",
        "interval",
        "stale_after",
        "min_credits",
    }
)
_WIRING_HELPS: Final = {
    "api_url": "LAYERS_API_URL of the injected containers",
    "fallback_api_url": "LAYERS_FALLBACK_API_URL of the injected containers, when set",
    "interval": "LAYERS_SIDECAR_INTERVAL of the injected containers, when not the default",
    "stale_after": "LAYERS_SIDECAR_STALE_AFTER of the injected containers, when not the default",
    "min_credits": "LAYERS_SIDECAR_MIN_CREDITS of the injected containers, when set",
}

COMMANDS: Final = {
    "serve": Command(
        "Poll GET /v1/whoami forever and serve /readyz, /livez, /status and /metrics.",
        _KEY | _POLL | {"listen", "stale_after", "quitquitquit", "ready_file", "fallback_api_url"},
    ),
    "check": Command(
        "One boot check for an init container or CI: call GET /v1/whoami, retry transient "
        "failures (server errors, timeouts, 429 after its Retry-After) with the back-off of "
        "serve, the last wait cut so that one more attempt fits before --deadline, and exit "
        "with a code. A 429 asking to wait past --deadline ends it at once (no call before the "
        "upstream asked). Exit codes: 0 ready, 1 no good answer by --deadline, "
        "2 configuration error, 3 unauthenticated or client error, 4 billing exhausted, "
        "5 kill switch or access revoked, 6 credits below --min-credits.",
        _KEY | _POLL | {"deadline", "fallback_api_url"},
        helps={
            "api_key_file": "file holding the key (a mounted Secret), read before each attempt; "
            "the key itself comes from LAYERS_API_KEY, which has no flag on purpose",
            "interval": "longest wait between two retries (the back-off doubles from about 1s "
            "up to this)",
            "timeout": "limit for one whoami request (cut to what is left of --deadline)",
            "min_credits": "when set, passing also needs creditBalance >= N (else exit 6)",
        },
    ),
    "emulate": Command(
        "A local Layers API emulator: GET /v1/whoami with the upstream's fields, errors and "
        "headers, and a control API under /_emulator/ to change the scenario at run time. "
        "It accepts any key of the form lp_<env>_<key_id>_<secret> (letters and digits, e.g. "
        "lp_test_mykey_NOTaREALsecret), in X-Api-Key or Authorization: Bearer; any other key is "
        '401 UNAUTHENTICATED "Malformed API key.".',
        _LOGS | {"emulator_listen", "scenario"},
        flags={"emulator_listen": "--listen"},
    ),
    "demo": Command(
        "The emulator and the sidecar together in one process on loopback, with the URLs and "
        "curl lines to try. The first thing to run.",
        _POLL | {"listen", "stale_after", "auth_scheme", "emulator_listen", "scenario"},
        # For a newcomer at a terminal: quicker polls, readable logs, loopback only.
        defaults={"listen": "127.0.0.1:8080", "interval": "2s", "log_format": "console"},
    ),
    "hub": Command(
        "Fleet mode: a shared, coalescing short-TTL cache of whoami answers per key in front of "
        "the Layers API. Sidecars point --api-url at it and keep the real API as "
        "--fallback-api-url; upstream calls per key stay at about one per --ttl, whatever the "
        "number of pods. Serves GET /v1/whoami, /readyz, /livez and /metrics.",
        # No key of its own: it forwards each caller's.
        _LOGS
        | {
            "listen",
            "api_url",
            "ttl",
            "timeout",
            "max_keys",
            "max_upstream_rate",
            "tls_cert_file",
            "tls_key_file",
        },
        helps={
            "listen": "HOST:PORT of the hub (GET /v1/whoami, /readyz, /livez, /metrics)",
            "api_url": "base URL of the real Layers API, which the hub calls",
            "timeout": "limit for one upstream call; past it callers get 504 UPSTREAM_TIMEOUT",
        },
    ),
    "inject": Command(
        "Wire the check gate and the serve sidecar into Kubernetes manifests, offline: reads "
        "YAML or JSON (any number of documents; no FILE or - is stdin) and writes the same "
        "documents to stdout in the same order, every pod template wired (Deployment, "
        "StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod). A template annotated "
        'layers-readiness/inject: "false" is left alone; layers-readiness/mode, /secret and '
        "/port override the flags for one workload. Malformed input: exit 2.",
        _WIRING,
        helps=_WIRING_HELPS,
    ),
    "injector": Command(
        "The same wiring as a mutating admission webhook over HTTPS: POST /mutate takes an "
        "AdmissionReview (admission.k8s.io/v1) for a Pod and answers allowed, with a JSONPatch "
        'that wires a pod annotated layers-readiness/inject: "true". Also /livez, /readyz, '
        "/metrics.",
        _WIRING | _LOGS | {"listen", "tls_cert_file", "tls_key_file"},
        defaults={"listen": "0.0.0.0:8443"},
        helps={
            **_WIRING_HELPS,
            "listen": "HOST:PORT of the webhook (HTTPS: POST /mutate, /livez, /readyz, /metrics)",
            "tls_cert_file": "PEM certificate (chain) the webhook serves; required",
            "tls_key_file": "PEM private key of --tls-cert-file; required",
        },
    ),
}


def load(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    names: frozenset[str] = frozenset(OPTIONS),
    overrides: Mapping[str, str] | None = None,
    spelling: Mapping[str, str] | None = None,
) -> Settings:
    """Builds Settings from the flags given (None when absent) and the environment.

    `names` limits the settings read to those the command uses; `overrides` replaces defaults
    (the demo's shorter interval), still beaten by a flag or a variable; `spelling` names a flag
    as the command spells it, for errors.
    """
    values: dict[str, object] = {}
    for name in sorted(names):
        option = OPTIONS[name]
        flag = (spelling or {}).get(name, option.flag)
        text = flags.get(name)
        source = flag
        if text is None:
            text = environ.get(option.env) or None
            source = option.env
        if text is None:
            text = (overrides or {}).get(name, option.default)
            source = f"{flag} (default)"
        if text is None:
            continue
        try:
            values[name] = option.parse(text)
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


def load_command(
    command: str, flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> Settings:
    """The Settings of one command, from its entry in COMMANDS."""
    spec = COMMANDS[command]
    return load(
        flags,
        environ,
        names=spec.options,
        overrides=spec.defaults,
        spelling={name: spec.flag(name) for name in spec.options},
    )
