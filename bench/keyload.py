"""Paced whoami load from many simulated sidecars, each with its key: one JSON line at the end.

`python -m bench.keyload PLAN.json` reads {"url", "keys", "pods_per_key", "period", "stagger",
"warmup", "seconds", "scheme"} and GETs {url} as `pods_per_key` sidecars per key would, each
every `period` seconds at a random phase; a key's sidecars start at a random time within
`stagger` (so that a cache's misses spread out instead of arriving together every TTL). Only the
requests scheduled after `warmup` count. It prints {"mark": "window"} when that window opens.

Open loop, as a fleet is: a request goes out at its time whether or not the earlier ones have
been answered (on a kept-alive idle connection, or a new one), and its latency runs from the time
it was due, so a server that falls behind is charged for the queue it causes. Plain asyncio
protocols, no task per request: the generator must cost far less than the servers it measures
(2,000 requests a second on a shared core).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

# A request not answered in this long after the schedule ends counts as an error.
TIMEOUT: Final = 10.0
MAX_CONNECTIONS: Final = 1024
# The scheduler sends every request that is due, then sleeps this long at most.
TICK: Final = 0.001


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


def _chunked_end(buffer: bytes, start: int) -> int:
    """The end of a chunked body that starts at `start`, or -1 while it is incomplete."""
    at = start
    while True:
        line_end = buffer.find(b"\r\n", at)
        if line_end < 0:
            return -1
        size = int(buffer[at:line_end].split(b";")[0], 16)
        at = line_end + 2 + size + 2
        if at > len(buffer):
            return -1
        if size == 0:
            return at


class Results:
    def __init__(self, warmup: float, started: float, window_end: float) -> None:
        self.warmup, self.started, self.window_end = warmup, started, window_end
        self.latencies: list[float] = []
        self.lateness: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.caches: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.in_window = 0
        self.outstanding = 0
        self.all_sent = False
        self.drained = asyncio.Event()

    def _settled(self) -> None:
        self.outstanding -= 1
        if self.all_sent and self.outstanding == 0:
            self.drained.set()

    def answered(self, due: float, sent: float, status: int, cache: str) -> None:
        self._settled()
        if due < self.warmup:
            return
        now = time.monotonic()
        self.latencies.append(now - (self.started + due))
        self.lateness.append(sent - (self.started + due))
        self.statuses[str(status)] += 1
        self.caches[cache] += 1
        if now <= self.window_end:
            self.in_window += 1

    def failed(self, due: float, why: str) -> None:
        self._settled()
        if due >= self.warmup:
            self.errors[why] += 1
            self.latencies.append(TIMEOUT)


class Client(asyncio.Protocol):
    """One kept-alive connection, one request at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.current: tuple[float, float] | None = None  # (due, sent)
        pool.clients.add(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.ready(self)

    def send(self, due: float, request: bytes) -> None:
        assert self.transport is not None
        self.current = (due, time.monotonic())
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.current is None:
            return
        head = self.buffer[:head_end].lower()
        body_start = head_end + 4
        if b"\r\ntransfer-encoding: chunked" in head:
            end = _chunked_end(self.buffer, body_start)
            if end < 0:
                return
        else:
            at = head.find(b"\r\ncontent-length:")
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
            end = body_start + length
            if len(self.buffer) < end:
                return
        cache = "-"
        for name in (b"\r\nx-layers-hub:", b"\r\nx-cache:"):
            at = head.find(name)
            if at >= 0:
                stop = head.find(b"\r\n", at + 2)
                cache = head[at + len(name) : stop if stop >= 0 else len(head)].strip().decode()
        due, sent = self.current
        self.current = None
        self.buffer = self.buffer[end:]
        self.pool.results.answered(due, sent, int(head[9:12]), cache)
        self.pool.ready(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.current is not None:
            self.pool.results.failed(self.current[0], "closed")
            self.current = None
        self.transport = None
        self.pool.lost(self)


class Pool:
    def __init__(self, host: str, port: int, requests: list[bytes], results: Results) -> None:
        self.host, self.port, self.requests, self.results = host, port, requests, results
        self.idle: list[Client] = []
        self.clients: set[Client] = set()
        self.pending: deque[tuple[float, int]] = deque()
        self.opening = 0
        self.open = 0
        self.tasks: set[asyncio.Task[Any]] = set()

    def submit(self, due: float, index: int) -> None:
        self.results.outstanding += 1
        if self.idle:
            self.idle.pop().send(due, self.requests[index])
            return
        self.pending.append((due, index))
        if self.open + self.opening < MAX_CONNECTIONS and self.opening < len(self.pending):
            self.opening += 1
            loop = asyncio.get_running_loop()
            task = loop.create_task(
                loop.create_connection(lambda: Client(self), self.host, self.port)
            )
            self.tasks.add(task)
            task.add_done_callback(self._opened)

    def _opened(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        self.opening -= 1
        if task.cancelled() or task.exception() is not None:
            if self.pending:
                due, _ = self.pending.popleft()
                self.results.failed(due, "connect")
            return
        self.open += 1

    def ready(self, client: Client) -> None:
        if self.pending:
            due, index = self.pending.popleft()
            client.send(due, self.requests[index])
        else:
            self.idle.append(client)

    def lost(self, client: Client) -> None:
        self.open -= 1
        if client in self.idle:
            self.idle.remove(client)


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
    started = time.monotonic()
    results = Results(load.warmup, started, started + load.warmup + load.seconds)
    pool = Pool(host, port, requests, results)
    window_open = load.warmup <= 0
    if window_open:
        print(json.dumps({"mark": "window"}), flush=True)
    at = 0
    while at < len(slots):
        now = time.monotonic() - started
        if not window_open and now >= load.warmup:
            # The caller reads the server's CPU and the upstream's count from here on.
            print(json.dumps({"mark": "window"}), flush=True)
            window_open = True
        while at < len(slots) and slots[at][0] <= now:
            pool.submit(*slots[at])
            at += 1
        if at < len(slots):
            await asyncio.sleep(min(TICK, max(0.0, slots[at][0] - now)))
    results.all_sent = True
    if results.outstanding > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(results.drained.wait(), TIMEOUT)
    for due, _ in pool.pending:
        results.failed(due, "timeout")
    for client in pool.clients:
        if client.current is not None:
            results.failed(client.current[0], "timeout")
            client.current = None
        if client.transport is not None:
            client.transport.close()
    latencies, lateness = sorted(results.latencies), sorted(results.lateness)

    def pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(p / 100 * len(values)))]

    counted = sum(1 for due, _ in slots if due >= load.warmup)
    return {
        "scheduled": counted,
        "scheduled_rate": counted / load.seconds,
        "answered": sum(results.statuses.values()),
        "served_rate": results.in_window / load.seconds,
        "statuses": dict(results.statuses),
        "cache": dict(results.caches),
        "errors": dict(results.errors),
        "unanswered": results.outstanding,
        "connections": pool.open,
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
