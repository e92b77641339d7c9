"""A paced probe load: GET a URL at a fixed rate for a fixed time, then print one JSON line.

`python -m bench.loadgen URL RATE SECONDS`. Unlike wrk, which sends as fast as it is answered,
this keeps to a rate, as kubelets and scrapers do. Workers share the schedule over kept-alive
connections; a worker that falls behind catches up without bursting past the schedule's slots.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter

import aiohttp

WORKERS = 16


async def load(url: str, rate: float, seconds: float) -> dict[str, object]:
    total = int(rate * seconds)
    statuses: Counter[int] = Counter()
    errors = 0
    started = time.monotonic()
    slots = iter(range(total))

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        for slot in slots:
            delay = started + slot / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                async with session.get(url) as response:
                    await response.read()
                    statuses[response.status] += 1
            except aiohttp.ClientError:
                errors += 1

    connector = aiohttp.TCPConnector(limit=WORKERS)
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(WORKERS)))
    elapsed = time.monotonic() - started
    return {
        "requests": sum(statuses.values()),
        "errors": errors,
        "statuses": {str(k): v for k, v in statuses.items()},
        "seconds": elapsed,
        "rate": sum(statuses.values()) / elapsed,
    }


def main() -> None:
    url, rate, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(load(url, rate, seconds))))


if __name__ == "__main__":
    main()
