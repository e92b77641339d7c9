"""3. Memory and CPU: RSS just after start and over 20,000 polls at a 5 ms interval.

RSS and CPU time come from /proc; the poll count from the emulator's side, so that measuring
costs the sidecar nothing. The emulator's rate limit is raised out of the way.
"""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

from sidecar.testing import emulator, sidecar, wait_for

from .common import CLIENT_CPU, ROOT, SERVER_CPU, Plan, cpu_seconds, pin, rss_mib
from .rows import Row

INTERVAL = "5ms"
SAMPLE_EVERY = 0.5
# Targets: steady RSS at most this, and less than this growth over the whole run.
RSS_CEILING_MIB = 45
GROWTH_LIMIT_MIB = 2
# What the RSS is made of: the interpreter with each layer of imports and nothing else.
FLOORS = {
    "python": "",
    "import asyncio": "import asyncio",
    "import aiohttp": "import aiohttp",
    "import sidecar.agent.check": "import sidecar.agent.check",
    # What `serve` loads (the CLI module itself imports nothing until a command runs).
    "import sidecar.agent.serve": "import sidecar.agent.serve",
}
_RSS = "import re; print(re.search(r'VmRSS:\\s+(\\d+)', open('/proc/self/status').read())[1])"


def rss_floors() -> dict[str, float]:
    """VmRSS in MiB of a fresh interpreter after each set of imports."""
    floors = {}
    for name, statement in FLOORS.items():
        run = subprocess.run(
            [sys.executable, "-c", f"{statement}\n{_RSS}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        floors[name] = int(run.stdout) / 1024
    return floors


def run(plan: Plan) -> dict[str, Any]:
    polls = plan.count(20_000, 2_000)
    time_limit = plan.pick(480, 60)
    with emulator(plan.tmp) as emu:
        emu.set(rateLimitPerMinute=1_000_000_000)
        pin(emu.process.proc.pid, CLIENT_CPU)
        with sidecar(plan.tmp, emu.url, "--interval", INTERVAL, "--log-level", "info") as sc:
            pid = sc.proc.pid
            pin(pid, SERVER_CPU)
            wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar to be ready")
            start_count, start_cpu, started = emu.whoami_requests(), cpu_seconds(pid), time.time()
            emu_cpu = cpu_seconds(emu.process.proc.pid)
            series = [{"t": 0.0, "polls": 0, "rss_mib": rss_mib(pid), "cpu_s": 0.0}]
            deadline = time.monotonic() + time_limit
            done = 0
            while done < polls and time.monotonic() < deadline:
                time.sleep(SAMPLE_EVERY)
                done = emu.whoami_requests() - start_count
                series.append(
                    {
                        "t": time.time() - started,
                        "polls": done,
                        "rss_mib": rss_mib(pid),
                        "cpu_s": cpu_seconds(pid) - start_cpu,
                    }
                )
            emu_cpu = cpu_seconds(emu.process.proc.pid) - emu_cpu
            status = sc.get("/status").json()
            assert sc.proc.poll() is None
    end = series[-1]
    warm = next((s for s in series if s["polls"] >= min(1000, polls // 10)), series[0])
    rss = [s["rss_mib"] for s in series]
    return {
        "interval": INTERVAL,
        "polls_target": polls,
        "polls": end["polls"],
        "seconds": end["t"],
        "rss_start_mib": series[0]["rss_mib"],
        "rss_warm_mib": warm["rss_mib"],
        "rss_end_mib": end["rss_mib"],
        "rss_max_mib": max(rss),
        "growth_mib": end["rss_mib"] - series[0]["rss_mib"],
        "growth_after_warm_mib": end["rss_mib"] - warm["rss_mib"],
        "warm_polls": warm["polls"],
        "cpu_s": end["cpu_s"],
        "cpu_ms_per_poll": end["cpu_s"] / max(1, end["polls"]) * 1000,
        "emulator_cpu_ms_per_poll": emu_cpu / max(1, end["polls"]) * 1000,
        "polls_per_s": end["polls"] / max(end["t"], 1e-9),
        "last_outcome": status["lastOutcome"],
        "met_steady": max(rss) <= RSS_CEILING_MIB,
        "met_growth": end["rss_mib"] - series[0]["rss_mib"] < GROWTH_LIMIT_MIB,
        "rss_floors_mib": rss_floors(),
        "series": series,
    }


def rows(soak: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"steady RSS over {soak['polls']:,} polls",
            f"≤ {RSS_CEILING_MIB} MiB",
            f"{soak['rss_max_mib']:.1f} MiB max",
            soak["met_steady"],
        ),
        Row(
            "RSS growth over the run",
            f"< {GROWTH_LIMIT_MIB} MiB",
            f"{soak['growth_mib']:+.2f} MiB ({soak['rss_start_mib']:.1f} → "
            f"{soak['rss_end_mib']:.1f})",
            soak["met_growth"],
        ),
        Row("CPU per poll", None, f"{soak['cpu_ms_per_poll']:.2f} ms"),
    ]


def section(soak: dict[str, Any]) -> list[str]:
    return [
        f"`serve --interval {soak['interval']}` against the emulator until {soak['polls']:,} "
        f"polls ({soak['seconds']:.0f} s, {soak['polls_per_s']:.0f} polls/s), RSS and CPU time "
        "from `/proc` every 0.5 s, the poll count from the emulator.",
        "",
        "| | value |",
        "| --- | --- |",
        f"| RSS just after start (first poll answered) | {soak['rss_start_mib']:.1f} MiB |",
        f"| RSS after {soak['warm_polls']:,} polls | {soak['rss_warm_mib']:.1f} MiB |",
        f"| RSS after {soak['polls']:,} polls | {soak['rss_end_mib']:.1f} MiB |",
        f"| RSS max over the run | {soak['rss_max_mib']:.1f} MiB |",
        f"| growth, start → end | {soak['growth_mib']:+.2f} MiB |",
        f"| growth, after {soak['warm_polls']:,} polls → end | "
        f"{soak['growth_after_warm_mib']:+.2f} MiB |",
        f"| CPU per poll, sidecar | {soak['cpu_ms_per_poll']:.3f} ms |",
        f"| CPU per poll, emulator (for scale) | {soak['emulator_cpu_ms_per_poll']:.3f} ms |",
        "",
        "What the RSS is made of: a fresh interpreter's VmRSS after each set of imports, and "
        "nothing else — "
        + ", ".join(f"{name} {mib:.1f} MiB" for name, mib in soak["rss_floors_mib"].items())
        + ".",
        "",
        f"At the default `--interval 30s` that CPU cost is "
        f"{soak['cpu_ms_per_poll'] / 30:.4f} ms of CPU a second: "
        f"{soak['cpu_ms_per_poll'] / 30 / 10:.5f} % of one core.",
    ]
