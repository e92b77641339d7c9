"""5. Upstream economy: whoami calls per minute with probes at 0, 10 and 1,000 per second.

Probes are answered from memory, so the upstream must see the poll rate and nothing else. The
sidecar polls every second here (the default is 30 s), so that a change would show within a
window; calls are counted on the emulator's side over each window.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from sidecar.testing import emulator, sidecar, wait_for

from .common import CLIENT_CPU, ROOT, SERVER_CPU, Plan, pin
from .rows import Row, mark

RATES = (0, 10, 1000)
# The target: each window holds the polls its length allows, give or take what its edges cut.
EXCESS_CALLS = 1.5


def run(plan: Plan) -> dict[str, Any]:
    window = plan.pick(60, 10)
    interval = 1.0
    results = []
    with (
        emulator(plan.tmp) as emu,
        sidecar(plan.tmp, emu.url, "--interval", f"{interval:g}s", "--log-level", "info") as sc,
    ):
        emu.set(rateLimitPerMinute=1_000_000)
        pin(sc.proc.pid, SERVER_CPU)
        wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar to be ready")
        for rate in RATES:
            before, started = emu.whoami_requests(), time.monotonic()
            if rate:
                load = subprocess.run(
                    [
                        "taskset",
                        "-c",
                        str(CLIENT_CPU),
                        sys.executable,
                        "-m",
                        "bench.loadgen",
                        sc.url + "/readyz",
                        str(rate),
                        str(window),
                    ],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=window + 60,
                )
                achieved: dict[str, Any] = json.loads(load.stdout)
            else:
                time.sleep(window)
                achieved = {"requests": 0, "rate": 0.0, "errors": 0, "statuses": {}}
            calls = emu.whoami_requests() - before
            seconds = time.monotonic() - started
            results.append(
                {
                    "probe_rate": rate,
                    "achieved_probe_rate": achieved["rate"],
                    "probes": achieved["requests"],
                    "probe_errors": achieved["errors"],
                    "probe_statuses": achieved["statuses"],
                    "seconds": seconds,
                    "whoami_calls": calls,
                    "whoami_per_minute": calls / seconds * 60,
                }
            )
        assert sc.proc.poll() is None
    per_minute = [r["whoami_per_minute"] for r in results]
    for r in results:
        # One poll per interval (plus the request's own time, a few ms a poll at most).
        r["expected_calls"] = r["seconds"] / interval
        r["excess_calls"] = r["whoami_calls"] - r["expected_calls"]
    return {
        "interval_s": interval,
        "window_s": window,
        "expected_per_minute": 60 / interval,
        "results": results,
        "spread_per_minute": max(per_minute) - min(per_minute),
        # "Must not move": every window holds the polls its length allows and no more; a window
        # may hold one more or one fewer by where its edges fall between two polls.
        "met": all(abs(r["excess_calls"]) <= EXCESS_CALLS for r in results),
    }


def rows(economy: dict[str, Any]) -> list[Row]:
    per_minute = ", ".join(f"{r['whoami_per_minute']:.1f}" for r in economy["results"])
    return [
        Row(
            "whoami calls/min at " + ", ".join(f"{rate:,}" for rate in RATES) + " probes/s",
            "must not move",
            per_minute,
            economy["met"],
        )
    ]


def section(economy: dict[str, Any]) -> list[str]:
    lines = [
        f"`serve --interval {economy['interval_s']:g}s` (the default is 30 s; 1 s shows a change "
        f"sooner), probes paced by `bench/loadgen.py`, {economy['window_s']:g} s a window, "
        "whoami calls counted by the emulator.",
        "",
        "| probes/s asked | probes/s made | probe answers | window | whoami calls "
        "(one per interval would be) | whoami/min |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in economy["results"]:
        statuses = ", ".join(f"{v:,} x {k}" for k, v in r["probe_statuses"].items()) or "—"
        lines.append(
            f"| {r['probe_rate']:,} | {r['achieved_probe_rate']:,.1f} | {statuses} | "
            f"{r['seconds']:.1f} s | {r['whoami_calls']} ({r['expected_calls']:.1f}) | "
            f"{r['whoami_per_minute']:.1f} |"
        )
    lines += [
        "",
        f"Target: the call rate does not move with the probe rate; each window holds the polls "
        "its length allows, give or take the one poll that its edges can cut "
        f"(spread {economy['spread_per_minute']:.2f} calls/min): {mark(economy['met'])}.",
    ]
    return lines
