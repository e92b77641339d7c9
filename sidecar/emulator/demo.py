"""`emulate` and `demo`: the emulator served alone, or together with the agent on loopback."""

from __future__ import annotations

from dataclasses import replace
from typing import Final

import structlog

from ..agent.serve import serve
from ..runtime.lifecycle import serving
from ..runtime.server import Address, listening
from ..secret import Secret
from ..settings import Settings
from .app import make_app

Log = structlog.typing.FilteringBoundLogger

DEMO_KEY: Final = "lp_demo_demo1_NOTaREALsecret"


async def emulate(settings: Settings, log: Log) -> int:
    return await serving(
        make_app(log, settings.scenario),
        settings.emulator_listen,
        log,
        "emulator listening",
        context=lambda address: {"url": address.url()},
    )


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
    app = make_app(log.bind(component="emulator"), settings.scenario)
    # Its own flag in the demo: a busy port is named as --emulator-listen, not --listen.
    async with listening(
        app, settings.emulator_listen, log, setting="--emulator-listen"
    ) as upstream:
        upstream_url = Address.of(upstream).url()
        settings = replace(settings, api_url=upstream_url, api_key=Secret(DEMO_KEY))

        def announce(sidecar_url: str) -> None:
            print(demo_banner(sidecar_url, upstream_url), flush=True)

        return await serve(settings, log.bind(component="sidecar"), announce)
