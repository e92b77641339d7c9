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

RATES = (0, 10, 1000)


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
        "met": all(abs(r["excess_calls"]) <= 1.5 for r in results),
    }
