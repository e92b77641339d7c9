"""1. The probe path: /readyz and /metrics under concurrent load, beside a bare aiohttp app.

wrk drives each target in turn, the order shuffled every round, so that the machine's noise
falls on all three alike; the ratio to the bare app within the same run is the figure that
matters. wrk runs on one core and the servers on the other.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import time
from typing import Any

from sidecar.testing import emulator, sidecar, wait_for

from .common import BENCH_DIR, CLIENT_CPU, SERVER_CPU, Plan, median, pin, python_server
from .rows import Row

CONNECTIONS = 32
# `/readyz` serves at least this share of what a bare aiohttp handler does.
READYZ_VS_BARE = 0.8


def wrk(url: str, seconds: float) -> dict[str, Any]:
    command = [
        "taskset",
        "-c",
        str(CLIENT_CPU),
        "wrk",
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{seconds:g}s",
        "--latency",
        "-s",
        str(BENCH_DIR / "wrk-report.lua"),
        url,
    ]
    if shutil.which("taskset") is None:
        command = command[3:]
    run = subprocess.run(command, capture_output=True, text=True, check=True, timeout=seconds + 30)
    line = next(text for text in run.stdout.splitlines() if text.startswith("{"))
    result: dict[str, Any] = json.loads(line)
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def run(plan: Plan) -> dict[str, Any]:
    rounds = plan.count(5, 1)
    seconds = plan.pick(5, 2)
    rng = random.Random(1)
    with (
        emulator(plan.tmp) as emu,
        sidecar(plan.tmp, emu.url, "--interval", "1s", "--log-level", "warning") as sc,
        python_server(plan.tmp, "bare", "bench.bare") as bare,
    ):
        pin(sc.proc.pid, SERVER_CPU)
        pin(bare.proc.pid, SERVER_CPU)
        wait_for(lambda: sc.get("/readyz").status == 200, what="the sidecar to be ready")
        targets = {
            "bare": bare.url + "/",
            "readyz": sc.url + "/readyz",
            "metrics": sc.url + "/metrics",
        }
        for url in targets.values():
            wrk(url, 1)  # warm-up: first connections, imports, caches
        upstream_before, load_started = emu.whoami_requests(), time.monotonic()
        samples: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
        for _ in range(rounds):
            order = list(targets)
            rng.shuffle(order)
            for name in order:
                samples[name].append(wrk(targets[name], seconds))
        upstream_calls = emu.whoami_requests() - upstream_before
        load_seconds = time.monotonic() - load_started
        assert sc.get("/readyz").status == 200
        assert sc.proc.poll() is None

    summary: dict[str, Any] = {}
    for name, runs in samples.items():
        summary[name] = {
            "rps": median([r["rps"] for r in runs]),
            "p50_ms": median([r["p50_us"] / 1000 for r in runs]),
            "p99_ms": median([r["p99_us"] / 1000 for r in runs]),
            "errors": sum(
                r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
                for r in runs
            ),
            "non_2xx": sum(r["non_2xx_3xx"] for r in runs),
        }
    ratios = {
        name: {
            "of_medians": summary[name]["rps"] / summary["bare"]["rps"],
            "per_round": [
                s["rps"] / b["rps"] for s, b in zip(samples[name], samples["bare"], strict=True)
            ],
        }
        for name in ("readyz", "metrics")
    }
    for ratio in ratios.values():
        ratio["median_per_round"] = median(ratio["per_round"])
    return {
        "connections": CONNECTIONS,
        "rounds": rounds,
        "seconds_per_run": seconds,
        "summary": summary,
        "ratios": ratios,
        # The sidecar polls every second whatever the load: about 60 a minute.
        "upstream_calls_per_minute_under_load": upstream_calls / load_seconds * 60,
        "load_seconds": load_seconds,
        "samples": samples,
    }


def rows(probe: dict[str, Any]) -> list[Row]:
    ratio = probe["ratios"]["readyz"]["of_medians"]
    s = probe["summary"]
    return [
        Row(
            "`/readyz` throughput vs bare aiohttp",
            f"≥ {READYZ_VS_BARE}x",
            f"{ratio:.2f}x ({s['readyz']['rps']:,.0f} vs {s['bare']['rps']:,.0f} req/s)",
            ratio >= READYZ_VS_BARE,
        ),
        Row(
            "`/metrics` throughput vs bare aiohttp",
            None,
            f"{probe['ratios']['metrics']['of_medians']:.2f}x ({s['metrics']['rps']:,.0f} req/s)",
        ),
    ]


def section(probe: dict[str, Any]) -> list[str]:
    s, ratios = probe["summary"], probe["ratios"]
    lines = [
        f"wrk, 1 thread, {probe['connections']} connections, {probe['rounds']} rounds of "
        f"{probe['seconds_per_run']:g} s per target, targets in a shuffled order each round; "
        "wrk pinned to CPU 0, the servers to CPU 1. Medians over the rounds.",
        "",
        "| target | req/s | p50 | p99 | vs bare (ratio of medians) | per-round ratios | errors |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, label in (
        ("bare", "bare aiohttp, constant 200"),
        ("readyz", "sidecar `/readyz`"),
        ("metrics", "sidecar `/metrics`"),
    ):
        ratio = ratios.get(name)
        rounds = ", ".join(f"{value:.2f}" for value in ratio["per_round"]) if ratio else "—"
        versus = f"{ratio['of_medians']:.2f}x" if ratio else "1"
        lines.append(
            f"| {label} | {s[name]['rps']:,.0f} | {s[name]['p50_ms']:.2f} ms | "
            f"{s[name]['p99_ms']:.2f} ms | {versus} | {rounds} | "
            f"{s[name]['errors'] + s[name]['non_2xx']} |"
        )
    lines += [
        "",
        f"Upstream calls while under this load: "
        f"{probe['upstream_calls_per_minute_under_load']:.1f}/min at `--interval 1s` "
        f"(over {probe['load_seconds']:.0f} s).",
    ]
    return lines
