"""Where the time goes: the sidecar under cProfile while wrk loads a probe path, or while it polls.

A figure that misses its target is explained from a profile, not a guess. Each case runs the
real `serve` under `python -m cProfile` (the profile is written when SIGTERM ends it cleanly)
and keeps the functions with the most time of their own.
"""

from __future__ import annotations

import pstats
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sidecar.testing import FAKE_KEY, Process, clean_env, emulator, free_port, http, wait_for

from .common import ROOT, SERVER_CPU, Plan, pin
from .probe import wrk

TOP = 12


def profiled_sidecar(tmp: Path, name: str, api_url: str, *args: str) -> tuple[Process, Path]:
    port = free_port()
    output = tmp / f"{name}.prof"
    err = tmp / f"{name}.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cProfile", "-o", str(output), "-m", "sidecar", "serve", *args],
        env=clean_env(
            LAYERS_API_KEY=FAKE_KEY,
            LAYERS_API_URL=api_url,
            LAYERS_SIDECAR_LISTEN=f"127.0.0.1:{port}",
            LAYERS_SIDECAR_LOG_LEVEL="warning",
        ),
        stdout=subprocess.DEVNULL,
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )
    process = Process(proc, tmp / "unused", err, f"http://127.0.0.1:{port}")
    wait_for(lambda: http("GET", process.url + "/readyz", timeout=1).status == 200, timeout=20)
    pin(proc.pid, SERVER_CPU)
    return process, output


def _where(file: str) -> str:
    """A short place: the path below site-packages, the repository or the standard library."""
    for marker in ("site-packages/", f"{ROOT}/", "/lib/python3."):
        if marker in file:
            file = file.split(marker, 1)[1]
            if marker.startswith("/lib/python3."):
                file = file.split("/", 1)[1]
    return file


def top_functions(path: Path) -> dict[str, Any]:
    stats: Any = pstats.Stats(str(path))
    rows: list[dict[str, Any]] = []
    idle = 0.0
    for (file, line, function), (_, calls, own, cumulative, _) in stats.stats.items():
        if "select.epoll" in function:
            idle += own  # the loop waiting for something to do
            continue
        rows.append(
            {
                "function": f"{_where(file)}:{line}({function})",
                "calls": calls,
                "own_s": own,
                "cumulative_s": cumulative,
            }
        )
    busy = stats.total_tt - idle
    for row in rows:
        row["busy_share"] = row["own_s"] / busy if busy else 0.0
    rows.sort(key=lambda row: -float(row["own_s"]))
    ours = sorted(
        (row for row in rows if row["function"].startswith("sidecar/")),
        key=lambda row: -float(row["cumulative_s"]),
    )
    return {"total_s": stats.total_tt, "busy_s": busy, "top": rows[:TOP], "ours": ours}


def per_poll(ours: list[dict[str, Any]], polls: int) -> list[dict[str, Any]]:
    """The sidecar's functions on the poll path, by CPU time per poll (start-up left out)."""
    rows = []
    for row in ours:
        if row["calls"] < polls // 2 or "<module>" in row["function"]:
            continue  # start-up, or not called once a poll
        rows.append({"function": row["function"], "per_poll_us": row["cumulative_s"] / polls * 1e6})
    return rows[:10]


def run(plan: Plan) -> dict[str, Any]:
    seconds = plan.pick(8, 3)
    results: dict[str, Any] = {}
    with emulator(plan.tmp) as emu:
        emu.set(rateLimitPerMinute=1_000_000_000)
        for name, path in (("readyz", "/readyz"), ("metrics", "/metrics")):
            sc, output = profiled_sidecar(plan.tmp, f"profile-{name}", emu.url, "--interval", "1s")
            wrk(sc.url + path, seconds)
            sc.stop(signal.SIGTERM)
            results[name] = top_functions(output)
        sc, output = profiled_sidecar(plan.tmp, "profile-poll", emu.url, "--interval", "5ms")
        before = emu.whoami_requests()
        time.sleep(seconds)
        polls = emu.whoami_requests() - before
        sc.stop(signal.SIGTERM)
        profiled = top_functions(output)
        results["poll"] = {**profiled, "polls": polls, "sidecar": per_poll(profiled["ours"], polls)}
    return results


def section(profile: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    titles = {
        "readyz": "`/readyz` under wrk",
        "metrics": "`/metrics` under wrk",
        "poll": f"polling every 5 ms ({profile.get('poll', {}).get('polls', 0):,} polls)",
    }
    for name, title in titles.items():
        if name not in profile:
            continue
        lines += [
            f"**{title}**: the functions with the most time of their own, as a share of the "
            f"{profile[name]['busy_s']:.2f} s the process was busy (waiting in epoll left out, "
            "start-up included):",
            "",
            "| function | calls | own time | share of busy |",
            "| --- | --- | --- | --- |",
        ]
        for row in profile[name]["top"][:8]:
            lines.append(
                f"| `{row['function']}` | {row['calls']:,} | {row['own_s']:.3f} s | "
                f"{row['busy_share']:.1%} |"
            )
        lines.append("")
    poll = profile.get("poll")
    if poll and poll.get("sidecar"):
        lines += [
            "**One poll, by the sidecar's own functions** (CPU time inside each, awaits left "
            f"out, per poll, under the profiler's overhead; over {poll['polls']:,} polls):",
            "",
            "| function | per poll |",
            "| --- | --- |",
        ]
        for row in poll["sidecar"]:
            lines.append(f"| `{row['function']}` | {row['per_poll_us']:.0f} µs |")
        lines.append("")
    return lines
