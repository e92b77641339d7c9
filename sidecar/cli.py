"""The `layers-sidecar` command: serve, check, emulate, demo; flags ↔ variables; exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace
from pathlib import Path
from typing import Final

import structlog

from . import __version__, emulator
from .check import EXIT_CONFIG, run_check
from .keys import EnvKey, FileKey, KeySource
from .logs import setup_logging
from .metrics import Metrics
from .poller import Poller
from .server import bound_address, make_app, start_site, until_signalled
from .settings import OPTIONS, ConfigError, Secret, Settings, load, parse_listen

Log = structlog.typing.FilteringBoundLogger

_KEY_OPTIONS: Final = frozenset({"api_key_file", "api_url", "auth_scheme"})
_POLL_OPTIONS: Final = frozenset({"interval", "timeout", "min_credits", "log_format", "log_level"})
COMMAND_OPTIONS: Final = {
    "serve": _KEY_OPTIONS | _POLL_OPTIONS | {"listen", "stale_after", "fallback_api_url"},
    "check": _KEY_OPTIONS | _POLL_OPTIONS | {"deadline", "fallback_api_url"},
    "demo": _POLL_OPTIONS | {"listen", "stale_after", "auth_scheme"},
    "emulate": frozenset({"log_format", "log_level"}),
    "hub": frozenset(
        {
            "listen",
            "api_url",
            "ttl",
            "timeout",
            "max_keys",
            "max_upstream_rate",
            "tls_cert_file",
            "tls_key_file",
            "log_format",
            "log_level",
        }
    ),
}

# The demo is for a newcomer at a terminal: quicker polls, readable logs, loopback only.
DEMO_DEFAULTS: Final = {"listen": "127.0.0.1:8080", "interval": "2s", "log_format": "console"}
DEMO_KEY: Final = "lp_demo_demo1_NOTaREALsecret"
EMULATOR_LISTEN: Final = ("--emulator-listen", "LAYERS_EMULATOR_LISTEN", "127.0.0.1:8081")
EMULATOR_SCENARIO: Final = ("--scenario", "LAYERS_EMULATOR_SCENARIO")

METAVARS: Final = {
    **dict.fromkeys(("interval", "timeout", "stale_after", "deadline", "ttl"), "DURATION"),
    "listen": "HOST:PORT",
    "max_keys": "N",
    "max_upstream_rate": "PER_SECOND",
    "min_credits": "N",
    "auth_scheme": "SCHEME",
}

DESCRIPTIONS: Final = {
    "serve": "Poll GET /v1/whoami forever and serve /readyz, /livez, /status and /metrics.",
    "check": (
        "One boot check for an init container or CI. Exit codes: 0 ready, 1 no good answer "
        "before --deadline, 2 configuration error, 3 unauthenticated or client error, "
        "4 billing exhausted, 5 kill switch or access revoked, 6 credits below --min-credits."
    ),
    "emulate": (
        "A local Layers API emulator: GET /v1/whoami with the upstream's fields, errors and "
        "headers, and a control API under /_emulator/ to change the scenario at run time."
    ),
    "demo": (
        "The emulator and the sidecar together in one process on loopback, with the URLs and "
        "curl lines to try. The first thing to run."
    ),
    "hub": (
        "Fleet mode: a shared, coalescing short-TTL cache of whoami answers per key in front of "
        "the Layers API. Sidecars point --api-url at it and keep the real API as "
        "--fallback-api-url; upstream calls per key stay at about one per --ttl, whatever the "
        "number of pods. Serves GET /v1/whoami, /readyz, /livez and /metrics."
    ),
}


EMULATOR_EPILOG: Final = (
    "Control API: GET|POST /_emulator/scenario (POST merges a JSON object), "
    "POST /_emulator/reset, GET /_emulator/stats. Scenario fields: "
    + ", ".join(f.name for f in fields(emulator.Scenario))
    + ". Failure modes: "
    + ", ".join(emulator.FAILURES)
    + ". Example: curl -X POST http://127.0.0.1:8081/_emulator/scenario "
    """-d '{"killSwitch": true}'"""
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layers-sidecar",
        description="Watch a Layers Partner API key through GET /v1/whoami: a readiness gate, "
        "a boot check and a Prometheus exporter.",
        epilog="The key comes from LAYERS_API_KEY or a file (--api-key-file); it has no flag, "
        "so that it never shows in ps. Every flag also reads the variable named beside it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, names in COMMAND_OPTIONS.items():
        sub = commands.add_parser(
            command,
            help=DESCRIPTIONS[command],
            description=DESCRIPTIONS[command],
            epilog=EMULATOR_EPILOG if command == "emulate" else None,
        )
        for name in sorted(names, key=list(OPTIONS).index):
            option = OPTIONS[name]
            default = (DEMO_DEFAULTS.get(name) if command == "demo" else None) or option.default
            shown = f"default {default}" if default else "unset by default"
            sub.add_argument(
                option.flag,
                dest=name,
                metavar=METAVARS.get(name, name.split("_")[-1].upper()),
                help=f"{option.help} [{option.env}; {shown}]",
            )
        if command in ("emulate", "demo"):
            flag, env, default = EMULATOR_LISTEN
            flag = "--listen" if command == "emulate" else flag
            sub.add_argument(
                flag,
                dest="emulator_listen",
                metavar="HOST:PORT",
                help=f"HOST:PORT of the emulator [{env}; default {default}]",
            )
            flag, env = EMULATOR_SCENARIO
            sub.add_argument(
                flag,
                dest="scenario",
                metavar="FILE",
                help="JSON file with the emulator's starting scenario (fields as in "
                f"POST /_emulator/scenario) [{env}; unset by default]",
            )
    return parser


def key_source(settings: Settings) -> KeySource:
    if settings.api_key_file is not None:
        return FileKey(settings.api_key_file)
    assert settings.api_key is not None
    return EnvKey(settings.api_key)


def _emulator_options(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str]:
    _, env, default = EMULATOR_LISTEN
    flag = "--listen" if args.command == "emulate" else EMULATOR_LISTEN[0]
    text = args.emulator_listen or environ.get(env) or default
    try:
        listen = str(parse_listen(text))
    except ValueError as error:
        raise ConfigError(flag if args.emulator_listen else env, str(error)) from None
    return listen, args.scenario or environ.get(EMULATOR_SCENARIO[1]) or ""


def _scenario(path: str) -> emulator.Scenario:
    if not path:
        return emulator.Scenario()
    try:
        return emulator.load_scenario(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError("--scenario", f"{path}: {error}") from None


async def serve(settings: Settings, log: Log, announce: Callable[[str], None] | None = None) -> int:
    """Polls and serves until SIGTERM/SIGINT; `announce` gets the bound URL once listening."""
    metrics = Metrics()
    async with Poller(settings, key_source(settings), log=log, on_result=metrics.observe) as poller:
        metrics.watch(poller)
        runner = await start_site(make_app(poller, metrics.registry), settings.listen, log)
        address = bound_address(runner)
        log.info(
            "listening",
            address=address,
            whoamiUrl=settings.whoami_url,
            interval=settings.interval,
            staleAfter=settings.stale_after,
            version=__version__,
        )
        if announce is not None:
            announce(f"http://{address}")
        poller.start()
        try:
            await until_signalled(log)
        finally:
            await poller.stop()
            await runner.cleanup()
    return 0


async def emulate(listen: str, scenario: emulator.Scenario, log: Log) -> int:
    runner = await start_site(emulator.make_app(log, scenario), parse_listen(listen), log)
    log.info("emulator listening", url=f"http://{bound_address(runner)}")
    try:
        await until_signalled(log)
    finally:
        await runner.cleanup()
    return 0


def demo_banner(sidecar: str, upstream: str) -> str:
    scenario = f"{upstream}/_emulator/scenario"
    return f"""
layers-readiness demo: the Layers API emulator and the sidecar, both on loopback.

  sidecar   {sidecar}   /readyz  /readyz?verbose  /livez  /status  /metrics
  emulator  {upstream}   /v1/whoami  /_emulator/scenario  /_emulator/stats

Try, in another terminal:
  curl -s '{sidecar}/readyz?verbose'
  curl -s {sidecar}/status
  curl -s {sidecar}/metrics | grep '^layers_'

  # Engage the kill switch; /readyz answers 503 from the next poll on:
  curl -s -X POST {scenario} -d '{{"killSwitch": true}}'
  curl -si {sidecar}/readyz
  # Clear it; the sidecar turns ready again by itself:
  curl -s -X POST {scenario} -d '{{"killSwitch": false}}'
  # Other scenarios: a revoked org, a bad key, a 429, a slow upstream, low credits:
  curl -s -X POST {scenario} -d '{{"apiAccessRevoked": true}}'
  curl -s -X POST {scenario} -d '{{"failure": "unauthenticated"}}'
  curl -s -X POST {scenario} -d '{{"failure": "rate_limited", "retryAfter": 5}}'
  curl -s -X POST {scenario} -d '{{"delay": 15}}'
  curl -s -X POST {upstream}/_emulator/reset

Ctrl-C stops both.
"""


async def demo(
    settings: Settings, upstream_listen: str, scenario: emulator.Scenario, log: Log
) -> int:
    upstream = await start_site(
        emulator.make_app(log.bind(component="emulator"), scenario), parse_listen(upstream_listen)
    )
    upstream_url = f"http://{bound_address(upstream)}"
    settings = replace(settings, api_url=upstream_url, api_key=Secret(DEMO_KEY))

    def announce(sidecar_url: str) -> None:
        print(demo_banner(sidecar_url, upstream_url), flush=True)

    try:
        return await serve(settings, log.bind(component="sidecar"), announce)
    finally:
        await upstream.cleanup()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    environ = os.environ if environ is None else environ
    command: str = args.command
    names = COMMAND_OPTIONS[command]
    flags = {name: getattr(args, name) for name in names}
    try:
        settings = load(
            flags,
            environ,
            names=names,
            overrides=DEMO_DEFAULTS if command == "demo" else None,
        )
        log = setup_logging(settings.log_format, settings.log_level)
        if command == "serve":
            return asyncio.run(serve(settings, log))
        if command == "check":
            return asyncio.run(run_check(settings, key_source(settings), log))
        if command == "hub":
            from .hub import run_hub  # only the hub pays for importing it

            return asyncio.run(run_hub(settings, log))
        listen, scenario_path = _emulator_options(args, environ)
        scenario = _scenario(scenario_path)
        if command == "emulate":
            return asyncio.run(emulate(listen, scenario, log))
        return asyncio.run(demo(settings, listen, scenario, log))
    except ConfigError as error:
        print(f"layers-sidecar {command}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
