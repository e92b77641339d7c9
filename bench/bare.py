"""The framework's ceiling: a bare aiohttp app that answers a constant 200, set up as the sidecar's.

Run as `python -m bench.bare HOST:PORT`; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from aiohttp import web


async def constant(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def serve(host: str, port: int) -> None:
    app = web.Application()
    app.router.add_get("/", constant)
    # The same runner settings as sidecar/runtime/server.py: no access log.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    host, _, port = sys.argv[1].rpartition(":")
    asyncio.run(serve(host, int(port)))


if __name__ == "__main__":
    main()
