"""6. Fleet mode: N sidecars against the emulator, direct and through a real `hub` process.

The sidecars are the real `Poller` (the code `serve` runs), many in this one process, each with
its own client session and connection, started at random phases of its interval as pods are.
The emulator and the hub are real processes. Time runs 2.5 times faster than in production, so
that a 24 s window stands for one minute: direct sidecars poll every 12 s (the default 30 s),
sidecars behind the hub every 2 s (5 s) and the hub's TTL is 2 s (5 s, its default). Upstream
calls are counted on the emulator's side; each window's count is therefore the number of calls
one real minute would see at those settings.

Measured for N in {10, 100, 1,000}, each mode: upstream calls a (scaled) minute, the time for a
kill-switch flip to reach every sidecar's readiness (p50, max; the clock starts before the flip
request), whoami latency as the sidecars saw it and as a probe process beside them saw it (the
hub's p99), the hub's RSS and CPU. Then the same for 10 real `serve` processes, direct and
through the hub; 1,000 sidecars with 1,000 distinct keys; and a failover run: 1,000 sidecars
with `--stale-after 0` (one failed poll would turn a pod not ready) through the hub, the hub
killed mid-run and restarted on the same port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import structlog

from sidecar.agent.keys import EnvKey
from sidecar.agent.poller import Poller
from sidecar.outcome import Outcome
from sidecar.readiness import Event
from sidecar.secret import Secret
from sidecar.settings import Settings
from sidecar.testing import (
    Emulator,
    Process,
    clean_env,
    emulator,
    free_port,
    hub,
    start,
    wait_for,
)

from .common import ROOT, Plan, cpu_seconds, percentile, rss_mib

# The target: through the hub, upstream calls a minute vary by at most this share across N.
HUB_SPREAD_TARGET: Final = 0.10

SCALE: Final = 2.5  # production seconds per benchmark second
MINUTE: Final = 60 / SCALE  # one production minute, in benchmark seconds
DIRECT_INTERVAL: Final = 30 / SCALE
HUB_INTERVAL: Final = 5 / SCALE
HUB_TTL: Final = 5 / SCALE
# Sidecars behind the hub fall back to Layers at the direct-mode interval while it is down.
FALLBACK_INTERVAL: Final = DIRECT_INTERVAL
# The production default: a limit, not a schedule, so it is not scaled. A thousand pollers in
# one process lag behind on a shared two-core machine; a short limit would count that lag as
# failed polls.
TIMEOUT: Final = 10.0
SIZES: Final = (10, 100, 1000)
KEY: Final = "lp_bench_fleet_FAKEsecretFAKE"
# How long a fleet may take to come up, beyond its interval, before the run is given up.
STARTUP_LIMIT: Final = 30.0
# The latency probe beside the fleet: this many requests a second, over this many keys at most.
PROBE_RATE: Final = 20.0
PROBE_KEYS: Final = 100
# The cross-check with real `serve` processes, one interpreter each: small N only.
SERVE_PROCESSES: Final = 10


def fleet_key(i: int) -> str:
    return f"lp_bench_k{i}_FAKEsecretFAKE"


def quiet_log() -> structlog.typing.FilteringBoundLogger:
    """The pollers' logs go nowhere: a thousand of them would measure the terminal."""
    logger: structlog.typing.FilteringBoundLogger = structlog.wrap_logger(
        structlog.PrintLogger(open(os.devnull, "w")),  # noqa: SIM115 - lives as long as the run
        wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL),
    )
    return logger


@dataclass
class Sidecar:
    """What one poller saw."""

    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    switched_at: float | None = None

    def observe(self, event: Event) -> None:
        if event.result is None:
            return
        outcome = event.result.outcome
        self.latencies.append(event.elapsed)
        if outcome.transient:
            self.failed += 1
        if outcome is Outcome.KILL_SWITCH and self.switched_at is None:
            self.switched_at = time.perf_counter()


class Fleet:
    """N pollers in this process, started at random phases of their interval."""

    def __init__(self, settings: Settings, keys: list[str], *, seed: int = 1) -> None:
        self.sidecars: list[Sidecar] = []
        self.pollers: list[Poller] = []
        self._stack = AsyncExitStack()
        self._settings = settings
        self._keys = keys
        self._rng = random.Random(seed)
        self._log = quiet_log()
        self._handles: list[asyncio.TimerHandle] = []

    async def __aenter__(self) -> Fleet:
        loop = asyncio.get_running_loop()
        for key in self._keys:
            sidecar = Sidecar()
            poller = Poller(
                self._settings, EnvKey(Secret(key)), log=self._log, observers=[sidecar.observe]
            )
            await self._stack.enter_async_context(poller)
            self.sidecars.append(sidecar)
            self.pollers.append(poller)
            phase = self._rng.uniform(0, self._settings.interval)
            self._handles.append(loop.call_later(phase, poller.start))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.cancel()
        await self._stack.aclose()

    def ready(self) -> int:
        return sum(poller.verdict().ready for poller in self.pollers)

    def polls(self) -> int:
        return sum(len(s.latencies) for s in self.sidecars)

    def failed(self) -> int:
        return sum(s.failed for s in self.sidecars)

    async def until(self, condition: Any, limit: float, what: str) -> None:
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"fleet: timed out after {limit:g}s waiting for {what}")
            await asyncio.sleep(0.05)


class Upstream:
    """The emulator's control API, from inside the event loop."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session

    async def set(self, **fields: Any) -> None:
        async with self._session.post(self.url + "/_emulator/scenario", json=fields) as reply:
            assert reply.status == 200, await reply.text()

    async def reset(self) -> None:
        async with self._session.post(self.url + "/_emulator/reset") as reply:
            assert reply.status == 200

    async def calls(self) -> int:
        async with self._session.get(self.url + "/_emulator/stats") as reply:
            return int((await reply.json())["whoamiRequests"])


def _settings(api_url: str, interval: float, **changes: Any) -> Settings:
    return Settings(api_url=api_url, interval=interval, timeout=TIMEOUT, **changes)


async def _window(
    fleet: Fleet,
    upstream: Upstream,
    hub_process: Process | None,
    seconds: float,
    keys: list[str],
) -> dict[str, Any]:
    """Upstream calls, latency and hub CPU over one window of steady polling."""
    for sidecar in fleet.sidecars:
        sidecar.latencies.clear()
    calls = await upstream.calls()
    cpu = cpu_seconds(hub_process.proc.pid) if hub_process else 0.0
    started = time.monotonic()
    probe = None
    if hub_process is not None:
        # The hub's latency from a process that is not busy with a thousand pollers.
        probe = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.hubprobe",
            hub_process.url,
            f"{PROBE_RATE:g}",
            f"{seconds - 1:g}",
            *sorted(set(keys))[:PROBE_KEYS],
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    probed: dict[str, Any] | None = None
    if probe is not None:
        out, _ = await probe.communicate()
        probed = json.loads(out)
    calls = await upstream.calls() - calls
    latencies = [x for s in fleet.sidecars for x in s.latencies]
    result: dict[str, Any] = {
        "window_s": elapsed,
        "upstream_calls": calls,
        "upstream_calls_per_minute": calls / elapsed * MINUTE,
        "polls": len(latencies),
        "latency_p50_ms": percentile(latencies, 50) * 1000,
        "latency_p99_ms": percentile(latencies, 99) * 1000,
        "latency_max_ms": max(latencies) * 1000,
        "ready_at_end": fleet.ready(),
        "failed_polls": fleet.failed(),
    }
    if probed is not None:
        probe_latencies = probed["latencies"]
        result["probe"] = {
            "rate": PROBE_RATE,
            "requests": len(probe_latencies),
            "statuses": probed["statuses"],
            "p50_ms": percentile(probe_latencies, 50) * 1000,
            "p99_ms": percentile(probe_latencies, 99) * 1000,
            "max_ms": max(probe_latencies) * 1000,
        }
    if hub_process is not None:
        hub_cpu = cpu_seconds(hub_process.proc.pid) - cpu
        result["hub_cpu_share"] = hub_cpu / elapsed
        # Every request the hub answered in the window: the sidecars' and the probe's.
        answered = len(latencies) + (result["probe"]["requests"] if "probe" in result else 0)
        result["hub_requests"] = answered
        result["hub_cpu_ms_per_request"] = hub_cpu * 1000 / max(1, answered)
        result["hub_rss_mib"] = rss_mib(hub_process.proc.pid)
    return result


async def _flip(fleet: Fleet, upstream: Upstream, limit: float) -> dict[str, Any]:
    """Kill switch on: the time until each sidecar's readiness turned; then off again."""
    for sidecar in fleet.sidecars:
        sidecar.switched_at = None
    started = time.perf_counter()
    await upstream.set(killSwitch=True)
    await fleet.until(lambda: fleet.ready() == 0, limit, "every sidecar not ready")
    times = [s.switched_at - started for s in fleet.sidecars if s.switched_at is not None]
    await upstream.set(killSwitch=False)
    cleared = time.perf_counter()
    await fleet.until(lambda: fleet.ready() == len(fleet.sidecars), limit, "every sidecar ready")
    return {
        "detect_p50_s": percentile(times, 50),
        "detect_max_s": max(times),
        "recover_all_s": time.perf_counter() - cleared,
    }


async def _run_fleet(
    upstream_url: str,
    api_url: str,
    *,
    keys: list[str],
    interval: float,
    window: float,
    hub_process: Process | None,
    flip: bool,
) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(upstream_url, session)
        await upstream.reset()
        await upstream.set(rateLimitPerMinute=1_000_000_000)
        async with Fleet(_settings(api_url, interval), keys) as fleet:
            # Every sidecar has answered once: all are in their steady cycle.
            await fleet.until(
                lambda: all(s.latencies for s in fleet.sidecars),
                interval + STARTUP_LIMIT,
                "first polls",
            )
            result = await _window(fleet, upstream, hub_process, window, keys)
            if flip:
                result.update(await _flip(fleet, upstream, 4 * (interval + HUB_TTL) + TIMEOUT))
            return result


@contextmanager
def _hub(plan: Plan, upstream_url: str, *args: str) -> Iterator[Process]:
    with hub(
        plan.tmp,
        upstream_url,
        "--ttl",
        f"{HUB_TTL:g}s",
        "--log-level",
        "warning",
        *args,
    ) as process:
        yield process


def _one_run(plan: Plan, upstream_url: str, mode: str, n: int, window: float) -> dict[str, Any]:
    keys = [KEY] * n
    if mode == "direct":
        result = asyncio.run(
            _run_fleet(
                upstream_url,
                upstream_url,
                keys=keys,
                interval=DIRECT_INTERVAL,
                window=window,
                hub_process=None,
                flip=True,
            )
        )
    else:
        with _hub(plan, upstream_url) as process:
            result = asyncio.run(
                _run_fleet(
                    upstream_url,
                    process.url,
                    keys=keys,
                    interval=HUB_INTERVAL,
                    window=window,
                    hub_process=process,
                    flip=True,
                )
            )
    return {"mode": mode, "n": n, **result}


def _many_keys(plan: Plan, upstream_url: str, n: int, window: float) -> dict[str, Any]:
    """One key per sidecar: every poll is a miss, so the budget must allow them all."""
    with _hub(plan, upstream_url, "--max-upstream-rate", "2000") as process:
        result = asyncio.run(
            _run_fleet(
                upstream_url,
                process.url,
                keys=[fleet_key(i) for i in range(n)],
                interval=HUB_INTERVAL,
                window=window,
                hub_process=process,
                flip=False,
            )
        )
    return {"mode": "hub, one key per sidecar", "n": n, **result}


async def _failover(
    plan: Plan, upstream_url: str, n: int, phase: float, dead: str = "refused"
) -> dict[str, Any]:
    """The hub SIGKILLed mid-run, its port then `refused` (nothing listening) or `black-holed`
    (a socket that accepts and never answers), then a new hub on the same port."""
    port = free_port()
    hub_url = f"http://127.0.0.1:{port}"
    env = clean_env(
        LAYERS_API_URL=upstream_url,
        LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
        LAYERS_HUB_TTL=f"{HUB_TTL:g}s",
        LAYERS_SIDECAR_LOG_LEVEL="warning",
    )

    def start_hub(name: str) -> Process:
        return start(["hub"], env=env, tmp=plan.tmp, name=name, url=hub_url, ready_path="/livez")

    first = start_hub(f"hub-failover-{dead}")
    second: Process | None = None
    hole: socket.socket | None = None
    # Fallback mode paces the fleet at --fallback-interval: long enough phases to measure it,
    # and to leave out the move over (one hub interval, a --timeout on a black hole) and back.
    entry = HUB_INTERVAL + (TIMEOUT if dead == "black-holed" else 0.0)
    dead_phase = max(phase, entry + 3 * FALLBACK_INTERVAL)
    back = FALLBACK_INTERVAL * 1.1 + HUB_INTERVAL
    back_phase = max(phase, back + 3 * HUB_INTERVAL)
    samples: list[dict[str, float]] = []
    marks: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as session:
            upstream = Upstream(upstream_url, session)
            await upstream.reset()
            await upstream.set(rateLimitPerMinute=1_000_000_000)
            settings = _settings(
                hub_url,
                HUB_INTERVAL,
                stale_after=0.0,
                fallback_api_url=upstream_url,
                fallback_interval=FALLBACK_INTERVAL,
            )
            async with Fleet(settings, [KEY] * n) as fleet:
                # Generous: on a loaded machine a thousand first connections take a while.
                await fleet.until(lambda: fleet.ready() == n, STARTUP_LIMIT, "the fleet ready")
                await asyncio.sleep(HUB_INTERVAL)
                began = time.monotonic()

                async def sample_for(seconds: float) -> None:
                    end = time.monotonic() + seconds
                    while time.monotonic() < end:
                        samples.append(
                            {
                                "t": time.monotonic() - began,
                                "calls": await upstream.calls(),
                                "ready": fleet.ready(),
                                "failed": fleet.failed(),
                                "polls": fleet.polls(),
                            }
                        )
                        await asyncio.sleep(0.25)

                await sample_for(max(phase, 3 * HUB_INTERVAL))
                marks["killed"] = time.monotonic() - began
                first.stop(signal.SIGKILL)
                if dead == "black-holed":
                    hole = socket.socket()
                    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    hole.bind(("127.0.0.1", port))
                    hole.listen(4096)
                await sample_for(dead_phase)
                marks["restarted"] = time.monotonic() - began
                if hole is not None:
                    hole.close()
                second = await asyncio.to_thread(start_hub, f"hub-failover-{dead}-again")
                marks["listening"] = time.monotonic() - began
                await sample_for(back_phase)
    finally:
        if hole is not None:
            hole.close()
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop(signal.SIGKILL)

    def rate(start: float, end: float, what: str = "calls") -> float:
        inside = [s for s in samples if start <= s["t"] <= end]
        if len(inside) < 2 or inside[-1]["t"] == inside[0]["t"]:
            return math.nan  # a loop too busy to sample the phase twice
        return (inside[-1][what] - inside[0][what]) / (inside[-1]["t"] - inside[0]["t"])

    # Each phase's rate leaves out its first interval, while the fleet moves over.
    killed, listening = marks["killed"], marks["listening"]
    rates = {
        "through_hub": rate(0, killed),
        "hub_dead": rate(killed + entry, marks["restarted"]),
        "hub_back": rate(listening + back, samples[-1]["t"]),
    }
    polls = {
        "through_hub": rate(0, killed, "polls"),
        "hub_dead": rate(killed + entry, marks["restarted"], "polls"),
        "hub_back": rate(listening + back, samples[-1]["t"], "polls"),
    }
    ceiling = n * MINUTE / FALLBACK_INTERVAL
    return {
        "n": n,
        "dead": dead,
        "fallback_interval_s": FALLBACK_INTERVAL,
        "hub_dead_ceiling_per_minute": ceiling,
        # The whole dead phase, the move over included.
        "hub_dead_with_entry_per_minute": rate(killed, marks["restarted"]) * MINUTE,
        "phase_s": phase,
        "polls_per_minute": {k: v * MINUTE for k, v in polls.items()},
        "marks_s": marks,
        "upstream_calls_per_minute": {k: v * MINUTE for k, v in rates.items()},
        "direct_rate_per_minute": n * MINUTE / HUB_INTERVAL,
        "min_ready": min(s["ready"] for s in samples),
        "failed_polls": samples[-1]["failed"],
        "samples": samples,
        "met": min(s["ready"] for s in samples) == n
        and samples[-1]["failed"] == 0
        and rates["hub_dead"] * MINUTE <= ceiling * 1.05,
    }


def _serve_processes(plan: Plan, emu: Emulator, mode: str, n: int, window: float) -> dict[str, Any]:
    """The same run with N real `serve` processes, probed on /readyz as a kubelet would."""
    interval = DIRECT_INTERVAL if mode == "direct" else HUB_INTERVAL
    emu.reset()
    emu.set(rateLimitPerMinute=1_000_000_000)
    with ExitStack() as stack:
        api_url = emu.url
        if mode == "hub":
            api_url = stack.enter_context(_hub(plan, emu.url)).url
        sidecars: list[Process] = []
        for i in range(n):
            port = free_port()
            env = clean_env(
                LAYERS_API_KEY=KEY,
                LAYERS_API_URL=api_url,
                LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
                LAYERS_SIDECAR_INTERVAL=f"{interval:g}s",
                LAYERS_SIDECAR_LOG_LEVEL="warning",
            )
            name = f"serve-{mode}-{i}"
            url = f"http://127.0.0.1:{port}"
            sidecar = start(
                ["serve"], env=env, tmp=plan.tmp, name=name, url=url, ready_path="/livez"
            )
            stack.callback(sidecar.stop, signal.SIGKILL)
            sidecars.append(sidecar)

        def statuses() -> list[int]:
            return [sidecar.get("/readyz", timeout=5).status for sidecar in sidecars]

        limit = 2 * interval + HUB_TTL + STARTUP_LIMIT
        wait_for(lambda: set(statuses()) == {200}, timeout=limit, what="every serve ready")
        calls, started = emu.whoami_requests(), time.monotonic()
        time.sleep(window)
        elapsed = time.monotonic() - started
        calls = emu.whoami_requests() - calls

        def flip(kill: bool, status: int) -> list[float]:
            seen: dict[int, float] = {}
            began = time.perf_counter()
            emu.set(killSwitch=kill)
            deadline = time.monotonic() + limit
            while len(seen) < n and time.monotonic() < deadline:
                for i, answer in enumerate(statuses()):
                    if answer == status and i not in seen:
                        seen[i] = time.perf_counter() - began
                time.sleep(0.01)
            if len(seen) < n:
                raise RuntimeError(
                    f"fleet: {n - len(seen)} serve processes never answered {status}"
                )
            return list(seen.values())

        detect = flip(True, 503)
        recover = flip(False, 200)
    return {
        "mode": f"{mode}, {n} serve processes",
        "n": n,
        "window_s": elapsed,
        "upstream_calls": calls,
        "upstream_calls_per_minute": calls / elapsed * MINUTE,
        "detect_p50_s": percentile(detect, 50),
        "detect_max_s": max(detect),
        "recover_all_s": max(recover),
    }


def _brief(result: dict[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
        for k, v in result.items()
        if k in ("upstream_calls_per_minute", "detect_max_s", "latency_p99_ms", "hub_rss_mib")
    ) + (f", probe p99 {result['probe']['p99_ms']:.3g} ms" if "probe" in result else "")


def _failover_brief(result: dict[str, Any]) -> str:
    rates = result["upstream_calls_per_minute"]
    return (
        f"upstream calls a minute before {rates['through_hub']:.0f}, "
        f"during {rates['hub_dead']:.0f} (with the move over "
        f"{result['hub_dead_with_entry_per_minute']:.0f}; ceiling "
        f"{result['hub_dead_ceiling_per_minute']:.0f}), after {rates['hub_back']:.0f}; "
        f"fewest ready {result['min_ready']} of {result['n']}"
    )


def run(plan: Plan) -> dict[str, Any]:
    window = plan.pick(MINUTE, MINUTE / 4)
    sizes = SIZES if not plan.quick else (10, 100)
    runs = []
    with emulator(plan.tmp) as emu:
        for n in sizes:
            for mode in ("direct", "hub"):
                started = time.monotonic()
                runs.append(_one_run(plan, emu.url, mode, n, window))
                runs[-1]["wall_s"] = time.monotonic() - started
                print(f"bench: fleet {mode} N={n}: {_brief(runs[-1])}", file=sys.stderr)
        processes = []
        for mode in ("direct", "hub"):
            processes.append(_serve_processes(plan, emu, mode, SERVE_PROCESSES, window))
            print(f"bench: fleet {processes[-1]['mode']}: {_brief(processes[-1])}", file=sys.stderr)
        many = _many_keys(plan, emu.url, sizes[-1], window)
        print(f"bench: fleet one key per sidecar: {_brief(many)}", file=sys.stderr)
        failover = asyncio.run(_failover(plan, emu.url, sizes[-1], plan.pick(10, 5)))
        print(f"bench: fleet failover, refused: {_failover_brief(failover)}", file=sys.stderr)
        holed = asyncio.run(
            _failover(plan, emu.url, sizes[-1], plan.pick(10, 5), dead="black-holed")
        )
        print(f"bench: fleet failover, black-holed: {_failover_brief(holed)}", file=sys.stderr)
        wait_for(lambda: emu.process.proc.poll() is None, what="the emulator alive")
    hub_runs = [r for r in runs if r["mode"] == "hub"]
    per_minute = [r["upstream_calls_per_minute"] for r in hub_runs]
    spread = (max(per_minute) - min(per_minute)) / max(per_minute)
    return {
        "scale": SCALE,
        "minute_s": MINUTE,
        "direct_interval_s": DIRECT_INTERVAL,
        "hub_interval_s": HUB_INTERVAL,
        "hub_ttl_s": HUB_TTL,
        "timeout_s": TIMEOUT,
        "runs": runs,
        "serve_processes": processes,
        "many_keys": many,
        "failover": failover,
        "failover_black_holed": holed,
        "hub_spread": spread,
        "met_flat": spread <= HUB_SPREAD_TARGET,
        "met_failover": failover["met"] and holed["met"],
    }
