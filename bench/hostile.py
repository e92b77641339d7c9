"""6. Hostile inputs: what the fail-safe reading costs, and what hostile clients cost the sidecar.

- `classify` on bodies from a 1 KiB whoami to a 1 MiB one with the switch first (the switch
  search reads that far) and a 1 MiB one stating nothing; `redact.clean` on upstream strings.
- `/readyz` latency and the sidecar's RSS with 1,500 idle connections held open, against none.
- Upstream calls while every answer is a 429 with `Retry-After: 0` (a hot loop before the waits
  were bounded).
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import timeit
import urllib.request
from typing import Any

from sidecar.outcome import Answer, classify
from sidecar.redact import clean
from sidecar.secret import Secret
from sidecar.testing import FAKE_KEY, emulator, sidecar, wait_for

from .common import Plan, median, percentile, port_of, rss_mib

NOW = 1_800_000_000.0
GOOD: dict[str, Any] = {
    "organizationId": "2481fa5c-a404-44ed-a561-565392499abc",
    "workspaceId": "2481fa5c-a404-44ed-a561-565392499abc",
    "organizationName": "Acme Growth",
    "rateLimitTier": "standard",
    "killSwitch": False,
    "apiAccessRevoked": False,
    "apiKeyId": "c2037bb9-354d-4662-96b7-97a28ad6b6e1",
    "creditBalance": 2540,
}


def _bodies() -> dict[str, bytes]:
    good = json.dumps(GOOD).encode()
    return {
        "whoami_1kib": good,
        "whoami_60kib": json.dumps({**GOOD, "padding": "x" * 60_000}).encode(),
        "switch_first_1mib": json.dumps({"killSwitch": True, "padding": "x" * 1_048_000}).encode()[
            : 1024 * 1024
        ],
        "no_switch_1mib": json.dumps({**GOOD, "padding": "x" * 1_048_000}).encode()[: 1024 * 1024],
    }


def _per_call_us(func: Any, number: int) -> float:
    runs = timeit.repeat(func, number=number, repeat=5)
    return min(runs) / number * 1e6


def _classify_costs(plan: Plan) -> dict[str, float]:
    key = Secret(FAKE_KEY)
    costs = {}
    for name, body in _bodies().items():
        answer = Answer(status=200, body=body, too_large=len(body) >= 1024 * 1024)
        number = plan.count(200, 20) if len(body) > 100_000 else plan.count(5000, 200)
        costs[name] = _per_call_us(lambda a=answer: classify(a, NOW, key), number)
    return costs


def _clean_costs(plan: Plan) -> dict[str, float]:
    key = Secret(FAKE_KEY)
    texts = {"clean_300_chars": "x" * 300, "clean_64kib": "x" * 65536}
    return {
        name: _per_call_us(lambda t=text: clean(t, key), plan.count(5000, 200))
        for name, text in texts.items()
    }


def _probe_latencies(url: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url + "/readyz", timeout=5) as reply:
            reply.read()
        times.append(time.perf_counter() - started)
    return times


async def _hold(port: int, count: int) -> list[asyncio.StreamWriter]:
    opened = await asyncio.gather(
        *(asyncio.open_connection("127.0.0.1", port) for _ in range(count)),
        return_exceptions=True,
    )
    return [pair[1] for pair in opened if isinstance(pair, tuple)]


async def _close(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def _idle_connections(plan: Plan) -> dict[str, Any]:
    held = 1500
    probes = plan.count(500, 50)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    loop = asyncio.new_event_loop()
    try:
        with (
            emulator(plan.tmp) as emu,
            sidecar(plan.tmp, emu.url, "--interval", "1s", "--log-level", "info") as sc,
        ):
            wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar to be ready")
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
            quiet = _probe_latencies(sc.url, probes)
            rss_quiet = rss_mib(sc.proc.pid)
            writers = loop.run_until_complete(_hold(port_of(sc.url), held))
            crowded = _probe_latencies(sc.url, probes)
            rss_crowded = rss_mib(sc.proc.pid)
            loop.run_until_complete(_close(writers))
            return {
                "held": len(writers),
                "probes": probes,
                "readyz_p50_ms_idle_0": median(quiet) * 1000,
                "readyz_p99_ms_idle_0": percentile(quiet, 99) * 1000,
                "readyz_p50_ms_idle_1500": median(crowded) * 1000,
                "readyz_p99_ms_idle_1500": percentile(crowded, 99) * 1000,
                "rss_mib_idle_0": rss_quiet,
                "rss_mib_idle_1500": rss_crowded,
            }
    finally:
        loop.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _retry_after_zero(plan: Plan) -> dict[str, Any]:
    window = plan.pick(30, 5)
    with emulator(plan.tmp) as emu:
        emu.set(failure="rate_limited", retryAfter=0)
        with sidecar(plan.tmp, emu.url, "--interval", "30s", "--log-level", "info"):
            wait_for(lambda: emu.whoami_requests() >= 1, what="the first 429")
            before = emu.whoami_requests()
            time.sleep(window)
            calls = emu.whoami_requests() - before
    return {"window_s": window, "calls": calls, "calls_per_minute": calls * 60 / window}


def run(plan: Plan) -> dict[str, Any]:
    return {
        "classify_us": _classify_costs(plan),
        "clean_us": _clean_costs(plan),
        "idle_connections": _idle_connections(plan),
        "retry_after_0": _retry_after_zero(plan),
    }


def section(hostile: dict[str, Any]) -> list[str]:
    idle = hostile["idle_connections"]
    storm = hostile["retry_after_0"]
    lines = [
        "What reading answers fail-safe costs (`classify`: the switch search up to 1 MiB, "
        "duplicate-name checks, redaction of every string; best of 5 runs):",
        "",
        "| input | per call |",
        "| --- | --- |",
    ]
    for name, us in {**hostile["classify_us"], **hostile["clean_us"]}.items():
        lines.append(f"| `{name}` | {us:,.1f} µs |")
    lines += [
        "",
        f"`/readyz` with {idle['held']:,} idle connections held open, {idle['probes']} probes "
        "one after another:",
        "",
        "| idle connections | p50 | p99 | RSS |",
        "| --- | --- | --- | --- |",
        f"| 0 | {idle['readyz_p50_ms_idle_0']:.2f} ms | {idle['readyz_p99_ms_idle_0']:.2f} ms | "
        f"{idle['rss_mib_idle_0']:.1f} MiB |",
        f"| {idle['held']:,} | {idle['readyz_p50_ms_idle_1500']:.2f} ms | "
        f"{idle['readyz_p99_ms_idle_1500']:.2f} ms | {idle['rss_mib_idle_1500']:.1f} MiB |",
        "",
        f"Every answer a 429 with `Retry-After: 0`, `--interval 30s`: {storm['calls']} whoami "
        f"calls in {storm['window_s']:g} s ({storm['calls_per_minute']:.1f}/min; the back-off "
        "doubles from about 1 s to the interval).",
    ]
    return lines
