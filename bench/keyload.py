"""Paced whoami load from many simulated sidecars, each with its key: one JSON line at the end.

`python -m bench.keyload PLAN.json` reads {"url", "keys", "pods_per_key", "period", "stagger",
"warmup", "seconds", "scheme"} and GETs {url} as `pods_per_key` sidecars per key would, each
every `period` seconds at a random phase; a key's sidecars start at a random time within
`stagger` (so that a cache's misses spread out instead of arriving together every TTL). Only the
requests scheduled after `warmup` count.

Open loop, as a fleet is: a request goes out at its time whether or not the earlier ones have
been answered (on a kept-alive idle connection, or a new one), and its latency runs from the time
it was due, so a server that falls behind is charged for the queue it causes. Plain asyncio
streams: the generator must cost far less than the servers it measures.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

# A request not answered in this long counts as an error (and as this latency).
TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 1024
CACHE_HEADERS: Final = (b"x-layers-hub", b"x-cache")


@dataclass(frozen=True)
class Load:
    url: str
    keys: list[str]
    pods_per_key: int
    period: float
    stagger: float
    warmup: float
    seconds: float
    scheme: str = "x-api-key"

    def schedule(self, seed: int = 1) -> list[tuple[float, int]]:
        """(due time, key index) of every request, in time order."""
        rng = random.Random(seed)
        end = self.warmup + self.seconds
        slots: list[tuple[float, int]] = []
        for index in range(len(self.keys)):
            start = rng.uniform(0, self.stagger)
            for _ in range(self.pods_per_key):
                due = start + rng.uniform(0, self.period)
                while due < end:
                    slots.append((due, index))
                    due += self.period
        slots.sort()
        return slots


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> tuple[int, str]:
        """Sends one request and reads its answer: the status and the cache's own header."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, cache = 0, False, "-"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name in CACHE_HEADERS:
                cache = value.strip().decode(errors="replace").split()[0] if value.strip() else "-"
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status, cache


async def run(load: Load) -> dict[str, Any]:
    parts = urlsplit(load.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    header = "X-Api-Key: {}" if load.scheme == "x-api-key" else "Authorization: Bearer {}"
    requests = [
        (
            f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"{header.format(key)}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        for key in load.keys
    ]
    slots = load.schedule()
    idle: list[Connection] = []
    opened = 0
    gate = asyncio.Semaphore(MAX_CONNECTIONS)
    latencies: list[float] = []
    lateness: list[float] = []
    statuses: Counter[str] = Counter()
    caches: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    answered_in_window = 0
    started = time.monotonic()
    window_end = started + load.warmup + load.seconds

    async def one(due: float, index: int) -> None:
        nonlocal opened, answered_in_window
        counted = due >= load.warmup
        async with gate:
            sent = time.monotonic()
            try:
                async with asyncio.timeout(TIMEOUT):
                    if idle:
                        conn = idle.pop()
                    else:
                        opened += 1
                        conn = Connection(*await asyncio.open_connection(host, port))
                    status, cache = await conn.exchange(requests[index])
            except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as error:
                if counted:
                    errors[type(error).__name__] += 1
                    latencies.append(TIMEOUT)
                return
            idle.append(conn)
        done = time.monotonic()
        if counted:
            latencies.append(done - (started + due))
            lateness.append(sent - (started + due))
            statuses[str(status)] += 1
            caches[cache] += 1
            if done <= window_end:
                answered_in_window += 1

    def window_opens() -> None:
        # The caller reads the server's CPU and the upstream's count from here on.
        print(json.dumps({"mark": "window"}), flush=True)

    loop = asyncio.get_running_loop()
    loop.call_at(loop.time() + load.warmup, window_opens)
    tasks: set[asyncio.Task[None]] = set()
    for due, index in slots:
        delay = started + due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(due, index))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=TIMEOUT + 1)
    for conn in idle:
        conn.writer.close()
    latencies.sort()
    lateness.sort()

    def pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    counted = sum(1 for due, _ in slots if due >= load.warmup)
    return {
        "scheduled": counted,
        "scheduled_rate": counted / load.seconds,
        "answered": sum(statuses.values()),
        "served_rate": answered_in_window / load.seconds,
        "statuses": dict(statuses),
        "cache": dict(caches),
        "errors": dict(errors),
        "connections": opened,
        "p50_ms": pct(latencies, 50) * 1000,
        "p99_ms": pct(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else float("nan")) * 1000,
        "late_p99_ms": pct(lateness, 99) * 1000,
    }


def main() -> None:
    with open(sys.argv[1]) as file:
        load = Load(**json.load(file))
    print(json.dumps(asyncio.run(run(load))))


if __name__ == "__main__":
    main()
