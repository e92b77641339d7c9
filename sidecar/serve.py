"""The long-running commands: `serve`, `emulate` and `demo`. The wiring, not the logic.

`serve` puts the pieces together: a Poller that schedules and fetches; its observers, the
journal (logs), the metrics and the optional ready-file, each receiving the loop's events; and
the HTTP server reading the poller's state. Imported only by these commands, so that `check`
never loads the server, prometheus-client or the emulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import structlog

from . import __version__, emulator
from .journal import Journal
from .keys import key_source
from .metrics import Metrics
from .poller import Observer, Poller
from .readyfile import ReadyFile
from .server import bound_address, make_app, start_site, until_signalled
from .settings import Secret, Settings

Log = structlog.typing.FilteringBoundLogger

DEMO_KEY = "lp_demo_demo1_NOTaREALsecret"


async def serve(settings: Settings, log: Log, announce: Callable[[str], None] | None = None) -> int:
    """Polls and serves until SIGTERM/SIGINT (or POST /quitquitquit when enabled); `announce`
    gets the bound URL once listening."""
    metrics = Metrics()
    ready_file = ReadyFile(settings.ready_file, log) if settings.ready_file else None
    observers: list[Observer] = [Journal(log), metrics.observe]
    if ready_file is not None:
        observers.append(ready_file)
    quit_requested = asyncio.Event() if settings.quitquitquit else None
    async with Poller(settings, key_source(settings), log=log, observers=observers) as poller:
        metrics.watch(poller)
        runner = await start_site(
            make_app(
                poller,
                metrics.registry,
                quit_requested=quit_requested,
                whoami_url=settings.whoami_url,
            ),
            settings.listen,
            log,
        )
        address = bound_address(runner)
        optional = {"readyFile": str(settings.ready_file)} if settings.ready_file else {}
        log.info(
            "listening",
            address=address,
            whoamiUrl=settings.whoami_url,
            interval=settings.interval,
            staleAfter=settings.stale_after,
            quitquitquit=settings.quitquitquit,
            version=__version__,
            **optional,
        )
        if announce is not None:
            announce(f"http://{address}")
        poller.start()
        try:
            await until_signalled(log, quit_requested)
        finally:
            await poller.stop()
            if ready_file is not None:
                ready_file.close()
            await runner.cleanup()
    return 0


async def emulate(settings: Settings, log: Log) -> int:
    app = emulator.make_app(log, settings.scenario)
    runner = await start_site(app, settings.emulator_listen, log)
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
  # Low credits: readiness needs creditBalance >= --min-credits (start the demo with
  # `layers-sidecar demo --min-credits 100` for this one):
  curl -s -X POST {scenario} -d '{{"creditBalance": 5}}'
  curl -s -X POST {upstream}/_emulator/reset

The emulator accepts any key shaped lp_<env>_<key_id>_<secret> (the demo uses one); point
another sidecar at it with LAYERS_API_KEY=lp_test_mykey_NOTaREALsecret --api-url {upstream}.

Ctrl-C stops both.
"""


async def demo(settings: Settings, log: Log) -> int:
    app = emulator.make_app(log.bind(component="emulator"), settings.scenario)
    # Its own flag in the demo: a busy port is named as --emulator-listen, not --listen.
    upstream = await start_site(app, settings.emulator_listen, log, setting="--emulator-listen")
    upstream_url = f"http://{bound_address(upstream)}"
    settings = replace(settings, api_url=upstream_url, api_key=Secret(DEMO_KEY))

    def announce(sidecar_url: str) -> None:
        print(demo_banner(sidecar_url, upstream_url), flush=True)

    try:
        return await serve(settings, log.bind(component="sidecar"), announce)
    finally:
        await upstream.cleanup()
