"""The `layers-sidecar` command: serve, check, emulate, demo, hub, inject, injector; flags ↔
variables; exit codes.

Flags, variables, defaults and `--help` all come from `settings.OPTIONS` (each setting declared
once, as a field) and `commands.COMMANDS` (what each command takes and where its code is); see
there for how a command plugs in. Importing this module loads
nothing (not even argparse, which `main` loads): each command imports its own code when it
runs, so the init container's `check` never pays for the HTTP server, prometheus-client or the
emulator.
"""

from __future__ import annotations

import os
import sys

from . import __version__
from .exits import EXIT_CONFIG, EXIT_INTERRUPTED

# Not `typing.TYPE_CHECKING`: importing typing alone costs more than this whole module (mypy
# treats any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping, Sequence
    from typing import NoReturn

    from .commands import Command as CommandSpec
    from .settings import Settings


def _emulate_epilog() -> str:
    from dataclasses import fields

    from .emulator.scenario import FAILURES, Scenario

    return (
        "Control API: GET|POST /_emulator/scenario (POST merges a JSON object), "
        "POST /_emulator/reset, GET /_emulator/stats. Scenario fields: "
        + ", ".join(f.name for f in fields(Scenario))
        + ". Failure modes: "
        + ", ".join(FAILURES)
        + ". Example: curl -X POST http://127.0.0.1:8081/_emulator/scenario "
        """-d '{"killSwitch": true}'"""
    )


def _help(name: str, spec: CommandSpec) -> str:
    from .settings import OPTIONS

    option = OPTIONS[name]
    default = spec.defaults.get(name, option.default)
    meaning = spec.helps.get(name, option.help)
    if option.switch:
        return f"{meaning} [{option.env}=true; off by default]"
    shown = f"default {default}" if default else "unset by default"
    env = option.env
    if spec.hub_env and option.hub_env:
        env = f"{option.hub_env}, else {option.env}"
    return f"{meaning} [{env}; {shown}]"


def build_parser(*, command: str | None = None) -> argparse.ArgumentParser:
    """Every command's flags; the emulator's long epilog (which loads the scenario module) only
    when `command` is emulate or not known yet."""
    import argparse

    from .commands import COMMANDS
    from .settings import OPTIONS

    class Parser(argparse.ArgumentParser):
        """argparse, but a usage mistake is one line and exit code 2, like a bad value."""

        def error(self, message: str) -> NoReturn:
            # An unknown flag is reported by the top parser: name the command it was given to.
            prog = self.prog
            if command is not None and prog == "layers-sidecar":
                prog = f"{prog} {command}"
            self.exit(EXIT_CONFIG, f"{prog}: {message} (see --help)\n")

    parser = Parser(
        prog="layers-sidecar",
        description="Watch a Layers Partner API key through GET /v1/whoami: a readiness gate, "
        "a boot check and a Prometheus exporter.",
        epilog="The key comes from LAYERS_API_KEY or a file (--api-key-file); it has no flag, "
        "so that it never shows in ps. Every flag also reads the variable named beside it.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=spec.description,
            description=spec.description,
            epilog=_emulate_epilog() if name == "emulate" and command in (None, name) else None,
        )
        sub.add_argument("--version", action="version", version=f"layers-sidecar {__version__}")
        for option_name in sorted(spec.options, key=list(OPTIONS).index):
            option = OPTIONS[option_name]
            if option.switch:
                sub.add_argument(
                    spec.flag(option_name),
                    dest=option_name,
                    action="store_const",
                    const="true",
                    help=_help(option_name, spec),
                )
            else:
                sub.add_argument(
                    spec.flag(option_name),
                    dest=option_name,
                    metavar=option.metavar,
                    help=_help(option_name, spec),
                )
        if spec.files:
            sub.add_argument(
                "files", nargs="*", metavar="FILE", help="manifests to read; none or - is stdin"
            )
    return parser


def _joined(argv: Sequence[str]) -> list[str]:
    """`--interval -1s` → `--interval=-1s`, so that a value that looks like a flag reaches the
    value check (one line naming the setting) instead of argparse's "expected one argument"."""
    from .commands import COMMANDS
    from .settings import OPTIONS

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


def _command_of(argv: Sequence[str]) -> str | None:
    from .commands import COMMANDS

    return next((arg for arg in argv if arg in COMMANDS), None)


def _run(command: str, settings: Settings, files: Sequence[str]) -> int:
    from .commands import COMMANDS

    spec = COMMANDS[command]
    module, _, function = spec.run.partition(":")
    # __import__, not importlib.import_module: the import statement's path, which
    # `python -X importtime` (tests, bench/boot.py) accounts for.
    entry = getattr(__import__(module, fromlist=[function]), function)
    if spec.files:
        offline: int = entry(settings, files)
        return offline

    import asyncio

    from .logs import setup_logging

    log = setup_logging(settings.log_format, settings.log_level)
    code: int = asyncio.run(entry(settings, log))
    return code


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    # The settings table is imported when the command runs, not with this module.
    from .commands import COMMANDS, load_command
    from .options import ConfigError

    argv = _joined(sys.argv[1:] if argv is None else argv)
    args = build_parser(command=_command_of(argv)).parse_args(argv)
    environ = os.environ if environ is None else environ
    command: str = args.command
    flags = {name: getattr(args, name) for name in COMMANDS[command].options}
    try:
        return _run(command, load_command(command, flags, environ), getattr(args, "files", []))
    except ConfigError as error:
        print(f"layers-sidecar {command}: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return EXIT_INTERRUPTED


def run() -> NoReturn:
    """The command's entry point (`layers-sidecar`, `python -m sidecar`): `main`, then exit.

    `check`, an init container's command, exits at once: by then it has closed all it opened
    and its log lines are written; what `os._exit` skips is only the interpreter tearing down
    every module one by one, about 50 ms of CPU on every pod start (measured by bench/boot.py).
    The long-running commands exit the ordinary way, so that atexit handlers (a profiler,
    coverage) still run."""
    import contextlib

    code = main()
    if _command_of(_joined(sys.argv[1:])) != "check":
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe or stream: nothing more can be said.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
