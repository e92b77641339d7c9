"""One frozen Settings object, built once from flags and environment variables, validated once.

A flag beats its variable, the variable beats the default. Every refusal is a `ConfigError` that
names the setting in one line; the CLI turns it into exit code 2 (`exits.EXIT_CONFIG`).

Each setting is declared once, as a field of `Settings`: `option(flag, variable, default, help,
parser)` gives the field its type, its parsed default (written as the operator would type it)
and the `Option` from which the CLI builds the flag, `--help`, the variable look-up and the
one-line error. `OPTIONS` is derived from the fields; which command takes which option, and
how a command's settings are read (`load`), is in `commands.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final

from . import values
from .options import OPTION, option
from .secret import Secret
from .values import AuthScheme, InjectMode, Listen, LogFormat, LogLevel

if TYPE_CHECKING:
    from .emulator.scenario import Scenario

__all__ = [
    "OPTIONS",
    "AuthScheme",
    "InjectMode",
    "Listen",
    "LogFormat",
    "LogLevel",
    "Settings",
]


@dataclass(frozen=True)
class Settings:
    # From LAYERS_API_KEY only (no flag: a flag shows in ps); see `load`.
    api_key: Secret | None = None
    api_key_file: Path | None = option(
        "--api-key-file",
        "LAYERS_API_KEY_FILE",
        None,
        "file holding the key (a mounted Secret); re-read on every poll, so a rotated Secret "
        "takes effect without a restart. The key itself comes from LAYERS_API_KEY, which has "
        "no flag on purpose: a flag shows in ps.",
        values.file_path,
        "PATH",
    )
    api_url: str = option(
        "--api-url",
        "LAYERS_API_URL",
        "https://api.layers.com",
        "base URL of the Layers API; the call is {api-url}/v1/whoami",
        values.base_url,
        "URL",
        hub_env="LAYERS_HUB_API_URL",
    )
    auth_scheme: AuthScheme = option(
        "--auth-scheme",
        "LAYERS_AUTH_SCHEME",
        "x-api-key",
        "x-api-key sends X-Api-Key: <key>; bearer sends Authorization: Bearer <key>",
        lambda t: values.choice(AuthScheme, t),
        "SCHEME",
    )
    listen: Listen = option(
        "--listen",
        "LAYERS_SIDECAR_LISTEN",
        "0.0.0.0:8080",
        "HOST:PORT of the HTTP server (/readyz, /livez, /status, /metrics)",
        values.parse_listen,
        "HOST:PORT",
        hub_env="LAYERS_HUB_LISTEN",
    )
    interval: float = option(
        "--interval",
        "LAYERS_SIDECAR_INTERVAL",
        "30s",
        "time between polls",
        values.positive_duration,
        "DURATION",
    )
    timeout: float = option(
        "--timeout",
        "LAYERS_SIDECAR_TIMEOUT",
        "10s",
        "limit for one whoami request",
        values.positive_duration,
        "DURATION",
        hub_env="LAYERS_HUB_TIMEOUT",
    )
    stale_after: float = option(
        "--stale-after",
        "LAYERS_SIDECAR_STALE_AFTER",
        "90s",
        "how long transient failures may keep the last good verdict; 0 fails on the first",
        values.parse_duration,
        "DURATION",
    )
    min_credits: float | None = option(
        "--min-credits",
        "LAYERS_SIDECAR_MIN_CREDITS",
        None,
        "when set, readiness also needs creditBalance >= N",
        values.credits,
        "N",
    )
    deadline: float = option(
        "--deadline",
        "LAYERS_SIDECAR_DEADLINE",
        "60s",
        "how long check retries transient failures; 0 means one attempt",
        values.parse_duration,
        "DURATION",
    )
    wait: bool = option(
        "--wait",
        "LAYERS_SIDECAR_WAIT",
        "false",
        "wait until the key is healthy instead of exiting on a hard stop: every outcome but "
        "ok is tried again (hard stops at --interval, transient ones with the usual "
        "back-off) and check exits 0 at the first good answer. Without --deadline it waits "
        "for ever; with one, it ends at the deadline with the code of the last outcome. "
        "What an init container runs: a kill switch at start-up holds the pod in Init "
        "without restarts",
        values.switch,
        switch=True,
    )
    quitquitquit: bool = option(
        "--quitquitquit",
        "LAYERS_SIDECAR_QUITQUITQUIT",
        "false",
        "enable POST /quitquitquit, which answers 200 and exits 0: how a Job's main "
        "container ends a classic (non-native) sidecar",
        values.switch,
        switch=True,
    )
    ready_file: Path | None = option(
        "--ready-file",
        "LAYERS_SIDECAR_READY_FILE",
        None,
        "a file that exists exactly while ready (written and removed atomically), for "
        "workers that no probe reaches: they check it before taking work",
        values.ready_file,
        "PATH",
    )
    log_format: LogFormat = option(
        "--log-format",
        "LAYERS_SIDECAR_LOG_FORMAT",
        "json",
        "json (one object a line) or console",
        lambda t: values.choice(LogFormat, t),
        "FORMAT",
    )
    log_level: LogLevel = option(
        "--log-level",
        "LAYERS_SIDECAR_LOG_LEVEL",
        "info",
        "debug, info, warning or error",
        lambda t: values.choice(LogLevel, t),
        "LEVEL",
    )
    fallback_api_url: str | None = option(
        "--fallback-api-url",
        "LAYERS_FALLBACK_API_URL",
        None,
        "base URL called in the same poll when --api-url cannot be reached or times out "
        "(the real API, behind a hub); an HTTP answer, 5xx included, is never retried there",
        values.base_url,
        "URL",
    )
    fallback_interval: float = option(
        "--fallback-interval",
        "LAYERS_FALLBACK_INTERVAL",
        "30s",
        "while --api-url gives no HTTP answer, polls go to --fallback-api-url no more often "
        "than this (with jitter), the hub tried first each time",
        values.positive_duration,
        "DURATION",
    )
    # Fleet mode (`hub`).
    ttl: float = option(
        "--ttl",
        "LAYERS_HUB_TTL",
        "5s",
        "how long one upstream answer serves every caller holding the same key",
        values.positive_duration,
        "DURATION",
    )
    max_keys: int = option(
        "--max-keys",
        "LAYERS_HUB_MAX_KEYS",
        "10000",
        "distinct keys remembered; the least recently used go first",
        values.key_count,
        "N",
    )
    max_upstream_rate: float = option(
        "--max-upstream-rate",
        "LAYERS_HUB_MAX_UPSTREAM_RATE",
        "20",
        "upstream calls per second, all keys together; a miss past it is answered "
        "503 HUB_BUSY with Retry-After",
        values.rate,
        "PER_SECOND",
    )
    tls_cert_file: Path | None = option(
        "--tls-cert-file",
        "LAYERS_HUB_TLS_CERT_FILE",
        None,
        "PEM certificate (chain): serve HTTPS; needs --tls-key-file",
        values.file_path,
        "PATH",
    )
    tls_key_file: Path | None = option(
        "--tls-key-file",
        "LAYERS_HUB_TLS_KEY_FILE",
        None,
        "PEM private key of --tls-cert-file",
        values.file_path,
        "PATH",
    )
    # Wiring workloads (`inject`, `injector`).
    inject_mode: InjectMode = option(
        "--mode",
        "LAYERS_INJECT_MODE",
        "native",
        "native: a waiting check init container, then serve as a native sidecar "
        "(Kubernetes 1.29+); classic: the same init container, and serve as an ordinary "
        "container (left out of pods that run to completion, such as a Job's)",
        lambda text: values.choice(InjectMode, text),
        "MODE",
    )
    inject_secret: str = option(
        "--secret",
        "LAYERS_INJECT_SECRET",
        "layers-api-key",
        "the Secret holding the key (never created by the wiring)",
        values.secret_name,
        "NAME",
    )
    inject_secret_key: str = option(
        "--secret-key",
        "LAYERS_INJECT_SECRET_KEY",
        "api-key",
        "the key inside --secret",
        values.secret_key,
        "KEY",
    )
    inject_image: str | None = option(
        "--image",
        "LAYERS_INJECT_IMAGE",
        None,
        "image of the injected containers; unset: this version's image",
        values.image,
        "IMAGE",
    )
    inject_port: int = option(
        "--port",
        "LAYERS_INJECT_PORT",
        "9476",
        "where the injected serve listens; when the pod already declares or probes it, the "
        "smallest free port above it",
        values.port,
        "PORT",
    )
    # The emulator (`emulate`, `demo`).
    emulator_listen: Listen = option(
        "--emulator-listen",
        "LAYERS_EMULATOR_LISTEN",
        "127.0.0.1:8081",
        "HOST:PORT of the emulator",
        values.parse_listen,
        "HOST:PORT",
    )
    scenario: Scenario | None = option(
        "--scenario",
        "LAYERS_EMULATOR_SCENARIO",
        None,
        "JSON file with the emulator's starting scenario (fields as in POST /_emulator/scenario)",
        values.scenario_file,
        "FILE",
    )

    @property
    def whoami_url(self) -> str:
        return self.api_url.rstrip("/") + "/v1/whoami"

    @property
    def fallback_whoami_url(self) -> str | None:
        if self.fallback_api_url is None:
            return None
        return self.fallback_api_url.rstrip("/") + "/v1/whoami"


# The table every command's flags, variables, --help and errors are built from, in field order.
OPTIONS: Final = {
    f.name: replace(f.metadata[OPTION], name=f.name)
    for f in fields(Settings)
    if OPTION in f.metadata
}
