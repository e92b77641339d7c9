"""The `layers-sidecar` command: serve, check, emulate, demo; flags ↔ variables; exit codes.

Flags, variables, defaults and `--help` all come from the tables in `settings` (OPTIONS and
COMMANDS); see there for how a command declares its options. This module loads nothing but
argparse and those tables: each command imports its own code when it runs, so the init
container's `check` never pays for the HTTP server, prometheus-client or the emulator.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from . import __version__
from .settings import COMMANDS, EXIT_CONFIG, OPTIONS, ConfigError, Settings, load_command
from .settings import Command as CommandSpec


def _emulate_epilog() -> str:
    from dataclasses import fields

    from .scenario import FAILURES, Scenario

    return (
        "Control API: GET|POST /_emulator/scenario (POST merges a JSON object), "
        "POST /_emulator/reset, GET /_emulator/stats. Scenario fields: "
        + ", ".join(f.name for f in fields(Scenario))
        + ". Failure modes: "
        + ", ".join(FAILURES)
        + ". Example: curl -X POST http://127.0.0.1:8081/_emulator/scenario "
        """-d '{"killSwitch": true}'"""
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2, like a bad value."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see --help)\n")


def _help(name: str, spec: CommandSpec) -> str:
    option = OPTIONS[name]
    default = spec.defaults.get(name, option.default)
    if option.switch:
        return f"{option.help} [{option.env}=true; off by default]"
    shown = f"default {default}" if default else "unset by default"
    return f"{option.help} [{option.env}; {shown}]"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="layers-sidecar",
        description="Watch a Layers Partner API key through GET /v1/whoami: a readiness gate, "
        "a boot check and a Prometheus exporter.",
        epilog="The key comes from LAYERS_API_KEY or a file (--api-key-file); it has no flag, "
        "so that it never shows in ps. Every flag also reads the variable named beside it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, spec in COMMANDS.items():
        sub = commands.add_parser(
            command,
            help=spec.description,
            description=spec.description,
            epilog=_emulate_epilog() if command == "emulate" else None,
        )
        for name in sorted(spec.options, key=list(OPTIONS).index):
            option = OPTIONS[name]
            if option.switch:
                sub.add_argument(
                    spec.flag(name),
                    dest=name,
                    action="store_const",
                    const="true",
                    help=_help(name, spec),
                )
            else:
                sub.add_argument(
                    spec.flag(name), dest=name, metavar=option.metavar, help=_help(name, spec)
                )
    return parser


def _joined(argv: Sequence[str]) -> list[str]:
    """`--interval -1s` → `--interval=-1s`, so that a value that looks like a flag reaches the
    value check (one line naming the setting) instead of argparse's "expected one argument"."""
    takes_value = {
        spec.flag(name)
        for spec in COMMANDS.values()
        for name in spec.options
        if not OPTIONS[name].switch
    }
    joined: list[str] = []
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in takes_value and args and args[0].startswith("-") and args[0] != "--":
            joined.append(f"{arg}={args.pop(0)}")
        else:
            joined.append(arg)
    return joined


def _run(command: str, settings: Settings) -> int:
    import asyncio

    from .logs import setup_logging

    log = setup_logging(settings.log_format, settings.log_level)
    if command == "check":
        from .check import run_check

        return asyncio.run(run_check(settings, log))
    if command == "hub":
        from .hub import run_hub

        return asyncio.run(run_hub(settings, log))
    from . import serve

    if command == "serve":
        return asyncio.run(serve.serve(settings, log))
    if command == "emulate":
        return asyncio.run(serve.emulate(settings, log))
    return asyncio.run(serve.demo(settings, log))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(_joined(sys.argv[1:] if argv is None else argv))
    environ = os.environ if environ is None else environ
    command: str = args.command
    flags = {name: getattr(args, name) for name in COMMANDS[command].options}
    try:
        return _run(command, load_command(command, flags, environ))
    except ConfigError as error:
        print(f"layers-sidecar {command}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130
