"""The fleet suite's report: its headline rows, its section, and its figure (bench/fleet.png)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import BENCH_DIR
from .fleet import HUB_SPREAD_TARGET
from .rows import Row, mark

FLEET_FIGURE = BENCH_DIR / "fleet.png"


def rows(fleet: dict[str, Any]) -> list[Row]:
    hub_runs = [r for r in fleet["runs"] if r["mode"] == "hub"]
    per_minute = ", ".join(f"{r['upstream_calls_per_minute']:.1f}" for r in hub_runs)
    sizes = ", ".join(f"{r['n']:,}" for r in hub_runs)
    failover = fleet["failover"]
    return [
        Row(
            f"fleet: upstream calls/min through the hub at N = {sizes}",
            f"within {HUB_SPREAD_TARGET:.0%}",
            f"{per_minute} (spread {fleet['hub_spread']:.1%})",
            fleet["met_flat"],
        ),
        Row(
            "fleet: sidecars not ready while the hub is killed and restarted "
            f"({failover['n']:,} sidecars)",
            "0",
            f"{failover['n'] - failover['min_ready']} ({failover['failed_polls']} failed polls)",
            failover["met"],
        ),
    ]


def section(fleet: dict[str, Any]) -> list[str]:
    scale = fleet["scale"]
    lines = [
        f"Real `Poller`s (the code `serve` runs), N of them in one process, each with its own "
        "connection, started at random phases; the emulator and a real `layers-sidecar hub` "
        f"process. Time runs {scale:g} times faster than production: direct sidecars poll every "
        f"{fleet['direct_interval_s']:g} s (30 s), sidecars behind the hub every "
        f"{fleet['hub_interval_s']:g} s (5 s), the hub's `--ttl` is {fleet['hub_ttl_s']:g} s "
        f"(5 s), and each window lasts {fleet['minute_s']:g} s, so its call count is the calls "
        "one production minute sees. Times below are benchmark seconds; multiply by "
        f"{scale:g} for production. Latency is whoami as the sidecars saw it, which includes "
        "their own process's lag with N pollers in it, and as a separate probe process saw it "
        f"({fleet['runs'][1].get('probe', {}).get('rate', 20):g} requests a second over one "
        "connection beside the fleet): the hub's own latency.",
        "",
        "| mode | N | upstream calls/min | polls in the window (failed) | kill switch → not "
        "ready, p50 / max | back to ready, all | whoami p50 / p99, as the sidecars saw it | "
        "hub p50 / p99, from a probe | hub CPU | hub CPU per request | hub RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in [*fleet["runs"], fleet["many_keys"]]:
        hub = "hub_rss_mib" in r
        flip = (
            f"{r['detect_p50_s']:.2f} s / {r['detect_max_s']:.2f} s" if "detect_p50_s" in r else "—"
        )
        back = f"{r['recover_all_s']:.2f} s" if "recover_all_s" in r else "—"
        lines.append(
            f"| {r['mode']} | {r['n']:,} | {r['upstream_calls_per_minute']:,.1f} | "
            f"{r['polls']:,} ({r['failed_polls']:,}) | {flip} | {back} | "
            f"{r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} ms | "
            + (
                f"{r['probe']['p50_ms']:.1f} / {r['probe']['p99_ms']:.1f} ms | "
                if "probe" in r
                else "— | "
            )
            + (
                f"{r['hub_cpu_share']:.1%} of a core | {r['hub_cpu_ms_per_request']:.2f} ms | "
                f"{r['hub_rss_mib']:.1f} MiB |"
                if hub
                else "— | — | — |"
            )
        )
    processes = fleet.get("serve_processes") or []
    if processes:
        lines += [
            "",
            f"The same with {processes[0]['n']} real `serve` processes (one interpreter each), "
            "their `/readyz` probed in turn every 10 ms or so:",
            "",
            "| mode | upstream calls/min | kill switch → 503, p50 / max | back to 200, all |",
            "| --- | --- | --- | --- |",
        ]
        for r in processes:
            lines.append(
                f"| {r['mode']} | {r['upstream_calls_per_minute']:,.1f} | "
                f"{r['detect_p50_s']:.2f} s / {r['detect_max_s']:.2f} s | "
                f"{r['recover_all_s']:.2f} s |"
            )
    failover = fleet["failover"]
    rates = failover["upstream_calls_per_minute"]
    polled = failover["polls_per_minute"]
    lines += [
        "",
        f"Through the hub the upstream sees the same calls a minute at every N (spread "
        f"{fleet['hub_spread']:.1%}, target {HUB_SPREAD_TARGET:.0%}): "
        f"{mark(fleet['met_flat'])}. The one-key-per-"
        "sidecar run is the worst case for the hub: every poll is a miss, so upstream calls equal "
        "polls and the `--max-upstream-rate` budget (raised to 2,000/s for the run) is what "
        "bounds them.",
        "",
        f"**Failover.** {failover['n']:,} sidecars behind the hub with `--stale-after 0` and the "
        f"emulator as `--fallback-api-url`, {failover['phase_s']:g} s a phase: the hub SIGKILLed "
        f"at {failover['marks_s']['killed']:.1f} s, a new hub listening on the same port at "
        f"{failover['marks_s']['listening']:.1f} s.",
        "",
        "| phase | upstream calls/min | sidecar polls/min |",
        "| --- | --- | --- |",
        f"| through the hub | {rates['through_hub']:,.1f} | {polled['through_hub']:,.0f} |",
        f"| hub dead (every poll through the fallback) | {rates['hub_dead']:,.1f} | "
        f"{polled['hub_dead']:,.0f} |",
        f"| hub back | {rates['hub_back']:,.1f} | {polled['hub_back']:,.0f} |",
        "",
        f"N polls an interval would be {failover['direct_rate_per_minute']:,.0f} a minute; the "
        "sidecar polls column is what the one fleet process managed.",
        "",
        f"Fewest sidecars ready at any sample: {failover['min_ready']:,} of {failover['n']:,}; "
        f"failed polls: {failover['failed_polls']} (target: none not ready): "
        f"{mark(failover['met'])}.",
        "",
        f"![Fleet mode]({FLEET_FIGURE.name})",
    ]
    return lines


def plot(fleet: dict[str, Any], path: Path) -> None:
    """Upstream calls a minute against N, both modes; and the failover run over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, marker in (("direct", "o"), ("hub", "s")):
        runs = [r for r in fleet["runs"] if r["mode"] == mode]
        left.plot(
            [r["n"] for r in runs],
            [r["upstream_calls_per_minute"] for r in runs],
            marker=marker,
            label=mode if mode == "direct" else "through one hub",
        )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("sidecars (N)")
    left.set_ylabel("upstream whoami calls a minute")
    left.set_title("One key: upstream calls against fleet size")
    left.legend(loc="upper left")
    left.grid(alpha=0.3, which="both")

    failover = fleet["failover"]
    samples = failover["samples"]
    # Rates over about a second (4 samples), so that the fleet process's own lag between two
    # samples does not show as spikes.
    pairs = list(zip(samples, samples[4:], strict=False))
    times = [b["t"] for _, b in pairs]
    rates = [(b["calls"] - a["calls"]) / (b["t"] - a["t"]) * fleet["minute_s"] for a, b in pairs]
    (calls,) = right.plot(times, rates, label="upstream calls a minute (scaled)")
    right.set_xlabel("seconds into the run (benchmark time)")
    right.set_ylabel("upstream calls a minute")
    ready = right.twinx()
    (alive,) = ready.plot(
        [s["t"] for s in samples],
        [s["ready"] for s in samples],
        color="green",
        label="sidecars ready",
    )
    ready.set_ylim(0, failover["n"] * 1.1)
    ready.set_ylabel("sidecars ready")
    marks = failover["marks_s"]
    killed = right.axvline(marks["killed"], color="red", linestyle="--", label="hub killed")
    back = right.axvline(marks["listening"], color="grey", linestyle=":", label="hub back")
    right.legend(handles=[calls, alive, killed, back], loc="center left")
    right.set_title(f"Failover, {failover['n']:,} sidecars, --stale-after 0")
    right.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
