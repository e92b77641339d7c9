"""2. Detection latency: from the kill switch flipping upstream to /readyz answering 503.

Each flip comes at a random moment of the poll cycle. The clock starts just before the emulator
is asked to flip (so the figure includes that request, which only makes it larger) and stops at
the first probe that answers 503; probes go every millisecond over one kept-alive connection.
The switch is then cleared and the time back to 200 recorded too.
"""

from __future__ import annotations

import http.client
import random
import time
from typing import Any

from sidecar.testing import Emulator, Process, emulator, sidecar, wait_for

from .common import Plan, percentile, port_of
from .rows import Row, mark, ms

PROBE_GAP = 0.001


class Prober:
    """GET /readyz over one kept-alive connection, as fast as it is answered."""

    def __init__(self, url: str) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=5)

    def status(self) -> int:
        self._conn.request("GET", "/readyz")
        response = self._conn.getresponse()
        response.read()
        return response.status

    def until(self, status: int, limit: float) -> float:
        """Probes until /readyz answers `status`; returns when it did (perf_counter)."""
        deadline = time.perf_counter() + limit
        while True:
            if self.status() == status:
                return time.perf_counter()
            if time.perf_counter() > deadline:
                raise RuntimeError(f"/readyz did not answer {status} within {limit}s")
            time.sleep(PROBE_GAP)

    def close(self) -> None:
        self._conn.close()


def flips(emu: Emulator, sc: Process, count: int, interval: float) -> list[dict[str, float]]:
    rng = random.Random(2)
    prober = Prober(sc.url)
    results = []
    try:
        prober.until(200, 10)
        for _ in range(count):
            time.sleep(rng.uniform(0, interval))  # a random phase of the poll cycle
            started = time.perf_counter()
            emu.set(killSwitch=True)
            acknowledged = time.perf_counter()
            detected = prober.until(503, 5 * interval)
            time.sleep(rng.uniform(0, interval))
            cleared = time.perf_counter()
            emu.set(killSwitch=False)
            recovered = prober.until(200, 5 * interval)
            results.append(
                {
                    "detect_s": detected - started,
                    "detect_from_ack_s": detected - acknowledged,
                    "flip_request_s": acknowledged - started,
                    "recover_s": recovered - cleared,
                }
            )
    finally:
        prober.close()
    return results


def run(plan: Plan) -> dict[str, Any]:
    interval = 1.0
    count = plan.count(60, 10)
    with (
        emulator(plan.tmp) as emu,
        # Debug logs: each poll's own duration (elapsedMs), to know what "one request" takes.
        sidecar(plan.tmp, emu.url, "--interval", f"{interval:g}s", "--log-level", "debug") as sc,
    ):
        emu.set(rateLimitPerMinute=1_000_000)
        wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar to be ready")
        samples = flips(emu, sc, count, interval)
        assert sc.proc.poll() is None
        elapsed = [
            line["elapsedMs"] / 1000
            for line in sc.log_events()
            if line.get("event") in ("whoami", "whoami failed") and "elapsedMs" in line
        ]
    detect = [s["detect_s"] for s in samples]
    recover = [s["recover_s"] for s in samples]
    request_max = max(elapsed)
    bound = interval + request_max
    return {
        "interval_s": interval,
        "flips": count,
        "probe_gap_s": PROBE_GAP,
        "detect": {
            "p50_s": percentile(detect, 50),
            "p99_s": percentile(detect, 99),
            "max_s": max(detect),
            "min_s": min(detect),
        },
        "recover": {
            "p50_s": percentile(recover, 50),
            "p99_s": percentile(recover, 99),
            "max_s": max(recover),
        },
        "whoami_request": {
            "count": len(elapsed),
            "p50_s": percentile(elapsed, 50),
            "max_s": request_max,
        },
        # The target: never longer than one interval plus one (the slowest) whoami request.
        "bound_s": bound,
        "met": max(detect) <= bound,
        "samples": samples,
    }


def rows(detect: dict[str, Any]) -> list[Row]:
    d = detect["detect"]
    return [
        Row(
            f"detection latency max, `--interval {detect['interval_s']:g}s`",
            f"≤ interval + one request = {ms(detect['bound_s'])}",
            f"{ms(d['max_s'])} (p50 {ms(d['p50_s'])}, p99 {ms(d['p99_s'])}, "
            f"{detect['flips']} flips)",
            detect["met"],
        )
    ]


def section(detect: dict[str, Any]) -> list[str]:
    d, r, w = detect["detect"], detect["recover"], detect["whoami_request"]
    flip = sorted(s["flip_request_s"] for s in detect["samples"])
    return [
        f"{detect['flips']} flips at random moments of the poll cycle, `--interval "
        f"{detect['interval_s']:g}s`; `/readyz` probed every {detect['probe_gap_s'] * 1000:g} ms "
        "over one kept-alive connection. The clock starts *before* the request that flips the "
        "emulator, so each figure includes that request (median "
        f"{ms(flip[len(flip) // 2])}).",
        "",
        "| | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        f"| kill switch on → `/readyz` 503 | {ms(d['p50_s'])} | {ms(d['p99_s'])} | "
        f"{ms(d['max_s'])} |",
        f"| kill switch off → `/readyz` 200 | {ms(r['p50_s'])} | {ms(r['p99_s'])} | "
        f"{ms(r['max_s'])} |",
        f"| one whoami request (the sidecar's own `elapsedMs`, {w['count']} polls) | "
        f"{ms(w['p50_s'])} | | {ms(w['max_s'])} |",
        "",
        f"Target: max ≤ interval + one request = {detect['interval_s']:g} s + "
        f"{ms(w['max_s'])} (the slowest request of the run) = {ms(detect['bound_s'])}: "
        f"{mark(detect['met'])}.",
    ]
