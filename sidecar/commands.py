"""The command table: which settings each command takes, where its code is, and `load`, which
reads a command's settings from its flags and the environment.

A new role plugs in with one `Command(...)` entry: its description, the settings it takes (field
names of `Settings`; a new setting is one new field there), its own defaults or flag spellings,
and `run`, the "module:function" of its `async def run(settings, log) -> int`. The CLI builds
the flags, `--help`, the variable look-up and the one-line errors from the entry, and imports
`run`'s module only when that command runs, so `check` never loads what `serve` or `hub` need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from .options import ConfigError
from .secret import Secret
from .settings import OPTIONS, Settings


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
    # "module:function" of the command's `async def (settings, log) -> int`, imported on use.
    run: str = ""
    # An offline command over FILE arguments (`inject`): `run` is then a plain
    # `def (settings, files) -> int`, called without an event loop or logging.
    files: bool = False
    # Reads an option's hub variable (LAYERS_HUB_*) before its shared one.
    hub_env: bool = False

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
        "fallback_interval",
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
    "fallback_interval": "LAYERS_FALLBACK_INTERVAL of the injected serve, when not the default",
}

COMMANDS: Final = {
    "serve": Command(
        "Poll GET /v1/whoami forever and serve /readyz, /livez, /status and /metrics.",
        _KEY
        | _POLL
        | {
            "listen",
            "stale_after",
            "quitquitquit",
            "ready_file",
            "fallback_api_url",
            "fallback_interval",
        },
        run="sidecar.agent.serve:serve",
    ),
    "check": Command(
        "One boot check for an init container or CI: call GET /v1/whoami, retry transient "
        "failures (server errors, timeouts, 429 after its Retry-After) with the back-off of "
        "serve, the last wait cut so that one more attempt fits before --deadline, and exit "
        "with a code. A 429 asking to wait past --deadline ends it at once (no call before the "
        "upstream asked). Exit codes: 0 ready, 1 no good answer by --deadline, "
        "2 configuration error, 3 unauthenticated or client error, 4 billing exhausted, "
        "5 kill switch or access revoked, 6 credits below --min-credits.",
        _KEY | _POLL | {"deadline", "wait", "fallback_api_url"},
        helps={
            "api_key_file": "file holding the key (a mounted Secret), read before each attempt; "
            "the key itself comes from LAYERS_API_KEY, which has no flag on purpose",
            "interval": "longest wait between two retries (the back-off doubles from about 1s "
            "up to this)",
            "timeout": "limit for one whoami request (cut to what is left of --deadline)",
            "deadline": "how long check retries transient failures (with --wait: every "
            "failure, and for ever when no deadline is given); 0 means one attempt",
            "min_credits": "when set, passing also needs creditBalance >= N (else exit 6)",
        },
        run="sidecar.agent.check:run_check",
    ),
    "emulate": Command(
        "A local Layers API emulator: GET /v1/whoami with the upstream's fields, errors and "
        "headers, and a control API under /_emulator/ to change the scenario at run time. "
        "It accepts any key of the form lp_<env>_<key_id>_<secret> (letters and digits, e.g. "
        "lp_test_mykey_NOTaREALsecret), in X-Api-Key or Authorization: Bearer; any other key is "
        '401 UNAUTHENTICATED "Malformed API key.".',
        _LOGS | {"emulator_listen", "scenario"},
        flags={"emulator_listen": "--listen"},
        run="sidecar.emulator.demo:emulate",
    ),
    "demo": Command(
        "The emulator and the sidecar together in one process on loopback, with the URLs and "
        "curl lines to try. The first thing to run.",
        _POLL | {"listen", "stale_after", "auth_scheme", "emulator_listen", "scenario"},
        # For a newcomer at a terminal: quicker polls, readable logs, loopback only.
        defaults={"listen": "127.0.0.1:8080", "interval": "2s", "log_format": "console"},
        run="sidecar.emulator.demo:demo",
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
        run="sidecar.hub.server:run_hub",
        hub_env=True,
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
        run="sidecar.injector.manifests:run_inject_command",
        files=True,
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
        run="sidecar.injector.webhook:run_injector",
    ),
}


def load(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    *,
    names: frozenset[str] = frozenset(OPTIONS),
    overrides: Mapping[str, str] | None = None,
    spelling: Mapping[str, str] | None = None,
    hub: bool = False,
) -> Settings:
    """Builds Settings from the flags given (None when absent) and the environment.

    With `hub`, an option's hub variable (`Option.hub_env`) is read before its own: flag >
    hub variable > shared variable > default.

    `names` limits the settings read to those the command uses; `overrides` replaces defaults
    (the demo's shorter interval), still beaten by a flag or a variable; `spelling` names a flag
    as the command spells it, for errors.
    """
    parsed: dict[str, object] = {}
    defaulted: set[str] = set()
    for name in sorted(names):
        declared = OPTIONS[name]
        flag = (spelling or {}).get(name, declared.flag)
        text = flags.get(name)
        source = flag
        for env in (declared.hub_env if hub else None, declared.env):
            if text is None and env is not None:
                text = environ.get(env) or None
                source = env
        if text is None:
            text = (overrides or {}).get(name, declared.default)
            source = f"{flag} (default)"
            defaulted.add(name)
        if text is None:
            continue
        try:
            parsed[name] = declared.parse(text)
        except ValueError as error:
            raise ConfigError(source, str(error)) from None

    if parsed.get("wait") and "deadline" in defaulted:
        # `check --wait` with no deadline given waits for ever: a kill switch at start-up
        # holds the pod in Init until Layers clears it, however long that takes.
        parsed["deadline"] = math.inf

    if (parsed.get("tls_cert_file") is None) != (parsed.get("tls_key_file") is None):
        raise ConfigError("--tls-cert-file", "HTTPS needs both --tls-cert-file and --tls-key-file")

    key = environ.get("LAYERS_API_KEY") or None
    if "api_key_file" in names:
        if key is not None and parsed.get("api_key_file") is not None:
            raise ConfigError(
                "LAYERS_API_KEY",
                "set either LAYERS_API_KEY or LAYERS_API_KEY_FILE/--api-key-file, not both",
            )
        if key is None and parsed.get("api_key_file") is None:
            raise ConfigError(
                "LAYERS_API_KEY", "no key: set LAYERS_API_KEY or LAYERS_API_KEY_FILE/--api-key-file"
            )
        if key is not None:
            parsed["api_key"] = Secret(key.strip())
    return Settings(**parsed)  # type: ignore[arg-type]


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
        hub=spec.hub_env,
    )
