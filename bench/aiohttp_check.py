"""The floor for `check`: the upstream page's boot check written with aiohttp, and nothing else.

One GET of {LAYERS_API_URL}/v1/whoami with the key from LAYERS_API_KEY, the two switches
checked, exit 0 or 1. No settings, no logs, no retries: what any aiohttp program pays to make
one call, so `check`'s own cost is the difference.
"""

from __future__ import annotations

import asyncio
import os
import sys

import aiohttp


async def main() -> int:
    url = os.environ.get("LAYERS_API_URL", "https://api.layers.com") + "/v1/whoami"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers={"X-Api-Key": os.environ["LAYERS_API_KEY"]}) as response,
    ):
        if response.status != 200:
            return 1
        me = await response.json()
    return 1 if me.get("killSwitch") or me.get("apiAccessRevoked") else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
