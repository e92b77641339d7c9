"""bench/out/*.json → bench/RESULTS.md and bench/results.png.

Every number in RESULTS.md comes from the JSON of the run; the prose that explains what limits a
figure lives in bench/analysis.md, written from the profiles, and is copied in as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .common import BENCH_DIR

RESULTS = BENCH_DIR / "RESULTS.md"
FIGURE = BENCH_DIR / "results.png"
FLEET_FIGURE = BENCH_DIR / "fleet.png"
ANALYSIS = BENCH_DIR / "analysis.md"


def _load(out: Path, name: str) -> dict[str, Any] | None:
    path = out / f"{name}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _mark(met: bool) -> str:
    return "**met**" if met else "**missed**"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def plot(detect: dict[str, Any] | None, soak: dict[str, Any] | None, path: Path) -> bool:
    """Detection latency per flip, and RSS over the soak; False when there is nothing to draw."""
    if detect is None and soak is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    if detect is not None:
        times = sorted(s["detect_s"] * 1000 for s in detect["samples"])
        share = [(i + 1) / len(times) for i in range(len(times))]
        left.step(times, share, where="post", label=f"{len(times)} kill-switch flips")
        left.axvline(detect["interval_s"] * 1000, color="grey", linestyle=":", label="interval")
        left.axvline(
            detect["bound_s"] * 1000,
            color="red",
            linestyle="--",
            label="target: interval + request",
        )
        left.set_xlabel("kill switch on → /readyz 503 (ms)")
        left.set_ylabel("share of flips detected")
        left.set_title(f"Detection latency at --interval {detect['interval_s']:g}s")
        left.legend(loc="upper left")
        left.grid(alpha=0.3)
    if soak is not None:
        polls = [s["polls"] for s in soak["series"]]
        rss = [s["rss_mib"] for s in soak["series"]]
        right.plot(polls, rss, label="sidecar RSS")
        right.axhline(45, color="red", linestyle="--", label="target: 45 MiB")
        right.axhline(
            soak["rss_start_mib"] + 2, color="orange", linestyle=":", label="start + 2 MiB"
        )
        right.set_ylim(0, max(50, max(rss) + 5))
        right.set_xlabel(f"whoami polls (--interval {soak['interval']})")
        right.set_ylabel("RSS (MiB)")
        right.set_title("Memory over the soak")
        right.legend(loc="lower right")
        right.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def plot_fleet(fleet: dict[str, Any], path: Path) -> None:
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


def _headline(data: dict[str, dict[str, Any] | None]) -> list[str]:
    rows = ["| figure | target | result | |", "| --- | --- | --- | --- |"]
    probe, detect, soak, boot, economy = (
        data["probe"],
        data["detect"],
        data["soak"],
        data["boot"],
        data["economy"],
    )
    if probe is not None:
        ratio = probe["ratios"]["readyz"]["of_medians"]
        s = probe["summary"]
        rows.append(
            f"| `/readyz` throughput vs bare aiohttp | ≥ 0.8x | {ratio:.2f}x "
            f"({s['readyz']['rps']:,.0f} vs {s['bare']['rps']:,.0f} req/s) | "
            f"{_mark(ratio >= 0.8)} |"
        )
        rows.append(
            f"| `/metrics` throughput vs bare aiohttp | — | "
            f"{probe['ratios']['metrics']['of_medians']:.2f}x "
            f"({s['metrics']['rps']:,.0f} req/s) | no target |"
        )
    if detect is not None:
        d = detect["detect"]
        rows.append(
            f"| detection latency max, `--interval {detect['interval_s']:g}s` | "
            f"≤ interval + one request = {_ms(detect['bound_s'])} | {_ms(d['max_s'])} "
            f"(p50 {_ms(d['p50_s'])}, p99 {_ms(d['p99_s'])}, {detect['flips']} flips) | "
            f"{_mark(detect['met'])} |"
        )
    if soak is not None:
        rows.append(
            f"| steady RSS over {soak['polls']:,} polls | ≤ 45 MiB | "
            f"{soak['rss_max_mib']:.1f} MiB max | {_mark(soak['met_steady'])} |"
        )
        rows.append(
            f"| RSS growth over the run | < 2 MiB | {soak['growth_mib']:+.2f} MiB "
            f"({soak['rss_start_mib']:.1f} → {soak['rss_end_mib']:.1f}) | "
            f"{_mark(soak['met_growth'])} |"
        )
        rows.append(f"| CPU per poll | — | {soak['cpu_ms_per_poll']:.2f} ms | no target |")
    if boot is not None:
        r = boot["ratios"]
        ours = boot["results"]["layers-sidecar check"]["median_s"]
        targets = boot.get("targets")
        if targets is not None:
            minimal = targets["check_vs_minimal_aiohttp"]
            cli = targets["cli_import_vs_argparse"]
            cpu = minimal.get("cpu_ratio")
            rows.append(
                f"| `check` wall time vs a minimal aiohttp script | ≤ {minimal['target']:.2f}x | "
                f"{minimal['ratio']:.2f}x ({_ms(ours)})"
                + (f"; CPU time {cpu:.2f}x" if cpu is not None else "")
                + f" | {_mark(minimal['met'])} |"
            )
            rows.append(
                "| `import sidecar.cli` vs `import argparse` (CPU time) | "
                f"≤ {cli['target']:.2f}x | "
                f"{cli.get('cpu_ratio', cli['ratio']):.2f}x (wall {cli['ratio']:.2f}x) | "
                f"{_mark(cli['met'])} |"
            )
        rows.append(
            f"| `check` wall time vs curl + jq / requests | — | {_ms(ours)}: "
            f"{r['curl + jq (boot-check.sh)']:.2f}x / {r['requests (boot_check.py)']:.2f}x | "
            "no target |"
        )
    fleet = data.get("fleet")
    if fleet is not None:
        hub_runs = [r for r in fleet["runs"] if r["mode"] == "hub"]
        per_minute = ", ".join(f"{r['upstream_calls_per_minute']:.1f}" for r in hub_runs)
        sizes = ", ".join(f"{r['n']:,}" for r in hub_runs)
        rows.append(
            f"| fleet: upstream calls/min through the hub at N = {sizes} | within 10% | "
            f"{per_minute} (spread {fleet['hub_spread']:.1%}) | {_mark(fleet['met_flat'])} |"
        )
        failover = fleet["failover"]
        rows.append(
            f"| fleet: sidecars not ready while the hub is killed and restarted "
            f"({failover['n']:,} sidecars) | 0 | {failover['n'] - failover['min_ready']} "
            f"({failover['failed_polls']} failed polls) | {_mark(failover['met'])} |"
        )
    if economy is not None:
        per_minute = ", ".join(f"{r['whoami_per_minute']:.1f}" for r in economy["results"])
        rows.append(
            f"| whoami calls/min at 0, 10, 1,000 probes/s | must not move | {per_minute} | "
            f"{_mark(economy['met'])} |"
        )
    return rows


def _probe(probe: dict[str, Any]) -> list[str]:
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


def _detect(detect: dict[str, Any]) -> list[str]:
    d, r, w = detect["detect"], detect["recover"], detect["whoami_request"]
    flip = sorted(s["flip_request_s"] for s in detect["samples"])
    return [
        f"{detect['flips']} flips at random moments of the poll cycle, `--interval "
        f"{detect['interval_s']:g}s`; `/readyz` probed every {detect['probe_gap_s'] * 1000:g} ms "
        "over one kept-alive connection. The clock starts *before* the request that flips the "
        "emulator, so each figure includes that request (median "
        f"{_ms(flip[len(flip) // 2])}).",
        "",
        "| | p50 | p99 | max |",
        "| --- | --- | --- | --- |",
        f"| kill switch on → `/readyz` 503 | {_ms(d['p50_s'])} | {_ms(d['p99_s'])} | "
        f"{_ms(d['max_s'])} |",
        f"| kill switch off → `/readyz` 200 | {_ms(r['p50_s'])} | {_ms(r['p99_s'])} | "
        f"{_ms(r['max_s'])} |",
        f"| one whoami request (the sidecar's own `elapsedMs`, {w['count']} polls) | "
        f"{_ms(w['p50_s'])} | | {_ms(w['max_s'])} |",
        "",
        f"Target: max ≤ interval + one request = {detect['interval_s']:g} s + "
        f"{_ms(w['max_s'])} (the slowest request of the run) = {_ms(detect['bound_s'])}: "
        f"{_mark(detect['met'])}.",
    ]


def _soak(soak: dict[str, Any]) -> list[str]:
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


def _boot(boot: dict[str, Any]) -> list[str]:
    lines = [
        f"hyperfine, `--shell=none`, 3 warm-up runs and {boot['runs']} runs each, one "
        "invocation against one emulator. Each command exits 0 on the healthy key (checked "
        "before timing).",
        "",
        "| command | median | mean ± sd | min | `check` ÷ this |",
        "| --- | --- | --- | --- | --- |",
    ]
    targets = boot.get("targets", {})
    for name, r in boot["results"].items():
        lines.append(
            f"| {name} | {_ms(r['median_s'])} | {_ms(r['mean_s'])} ± {_ms(r['stddev_s'])} | "
            f"{_ms(r['min_s'])} | {boot['ratios'][name]:.2f} |"
        )
    if targets:
        minimal = targets["check_vs_minimal_aiohttp"]
        cli = targets["cli_import_vs_argparse"]
        lines += [
            "",
            f"`check` ÷ the minimal aiohttp script: {minimal['ratio']:.2f}x (target ≤ "
            f"{minimal['target']:.2f}x, {'met' if minimal['met'] else 'missed'}). "
            f"`import sidecar.cli` ÷ `import argparse`: CPU time "
            f"{cli.get('cpu_ratio', cli['ratio']):.2f}x, wall {cli['ratio']:.2f}x (target "
            f"≤ {cli['target']:.2f}x in CPU time, {'met' if cli['met'] else 'missed'}). "
            "The CLI module loads only argparse and the settings table; each command imports "
            "its own code when it runs, so `check` never loads the server, prometheus-client "
            "or the emulator.",
        ]
    profile = boot["import_profile"]
    lines += [
        "",
        "Where `check`'s start-up goes, from one `python -X importtime -m sidecar check`: the "
        "modules imported at the top and by the package and the CLI directly, with all they "
        "pull in (the first importer of a library pays for it), and the modules heaviest on "
        "their own.",
        "",
        "| imported at the top or by the CLI | cumulative | | heaviest on its own | own |",
        "| --- | --- | --- | --- | --- |",
    ]
    for direct, own in zip(profile["direct"], profile["heaviest_own"], strict=False):
        lines.append(
            f"| `{direct['module']}` | {direct['cumulative_ms']:.1f} ms | | "
            f"`{own['module']}` | {own['own_ms']:.1f} ms |"
        )
    return lines


def _economy(economy: dict[str, Any]) -> list[str]:
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
        f"(spread {economy['spread_per_minute']:.2f} calls/min): {_mark(economy['met'])}.",
    ]
    return lines


def _fleet(fleet: dict[str, Any]) -> list[str]:
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
        f"{fleet['hub_spread']:.1%}, target 10%): {_mark(fleet['met_flat'])}. The one-key-per-"
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
        f"{_mark(failover['met'])}.",
        "",
        f"![Fleet mode]({FLEET_FIGURE.name})",
    ]
    return lines


def _profile(profile: dict[str, Any]) -> list[str]:
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


def _hostile(hostile: dict[str, Any]) -> list[str]:
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


def _injector(injector: dict[str, Any]) -> list[str]:
    lines = [
        "A real `layers-sidecar injector` over HTTPS on one core; paced clients on the other, "
        "one kept-alive connection each per 125 reviews/s, every review a Deployment's pod wired "
        "and answered with "
        f"a patch, {injector['seconds_per_rate']:g} s per rate. RSS idle: "
        f"{injector['rss_idle_mib']:.1f} MiB. Load average at the end: "
        f"{injector['load_average']:.1f} (1 minute).",
        "",
        "| reviews/s (achieved) | reviews | p50 | p99 | max | handler p99 | CPU per review "
        "| RSS after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for rate, row in injector["rates"].items():
        lines.append(
            f"| {rate} ({row['achieved_rate']:.0f}) | {row['reviews']} | {_ms(row['p50_s'])} | "
            f"{_ms(row['p99_s'])} | {_ms(row['max_s'])} | "
            f"≤ {_ms(row['handler_p99_at_most_s'])} | {row['cpu_ms_per_review']:.2f} ms | "
            f"{row['rss_mib']:.1f} MiB |"
        )
    lines += [
        "",
        f"Target p99 under {_ms(injector['target_p99_s'])} at 50 reviews/s: "
        f"{_mark(injector['met'])}.",
    ]
    return lines


def write(out: Path, *, command: str) -> Path:
    names = (
        "machine",
        "probe",
        "detect",
        "soak",
        "boot",
        "economy",
        "fleet",
        "profile",
        "hostile",
        "injector",
    )
    data = {name: _load(out, name) for name in names}
    machine = data["machine"] or {}
    quick = any(d.get("quick") for d in data.values() if d)
    wall = sum(d.get("wall_s", 0) for d in data.values() if d)
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench`, which installs the tools (`scripts/install-tools prometheus wrk "
        f"curl jq hyperfine`) and runs `{command}` (here `.venv/bin/{command}`); the raw "
        "figures are in `bench/out/*.json`. Everything runs on loopback against "
        "`layers-sidecar emulate`. The machine is shared and noisy, so each comparison is made "
        "in the same run and ratios matter more than absolute times.",
        "",
    ]
    if quick:
        lines += ["> **A `--quick` smoke run: too few samples to quote.**", ""]
    if machine:
        modified = " (with uncommitted changes to sidecar/)" if machine["sidecar_modified"] else ""
        lines += [
            f"Run on {machine['date']} at commit `{machine['commit']}`{modified}, "
            f"{wall / 60:.1f} minutes in all.",
            "",
            "| machine | |",
            "| --- | --- |",
            f"| CPU | {machine['nproc']} x {machine['cpu']} |",
            f"| memory | {machine['memory_gib']} GiB |",
            f"| kernel | Linux {machine['kernel']} |",
            f"| load average at the start | {machine['load_average']} |",
            f"| Python | {machine['python']} |",
            f"| aiohttp / prometheus-client / structlog | {machine['aiohttp']} / "
            f"{machine['prometheus_client']} / {machine['structlog']} |",
            f"| wrk / hyperfine | {machine['wrk'].split(' [')[0]} / {machine['hyperfine']} |",
            f"| curl / jq / requests | {machine['curl'].split(' (')[0]} / {machine['jq']} / "
            f"{machine['requests']} |",
            "",
        ]
    lines += ["## Headline", "", *_headline(data), ""]
    if plot(data["detect"], data["soak"], FIGURE):
        lines += [f"![Detection latency and RSS over the soak]({FIGURE.name})", ""]
    sections = (
        ("probe", "1. Probe path", _probe),
        ("detect", "2. Detection latency", _detect),
        ("soak", "3. Memory and CPU", _soak),
        ("boot", "4. Boot check", _boot),
        ("economy", "5. Upstream economy", _economy),
        ("fleet", "6. Fleet mode", _fleet),
        ("hostile", "7. Hostile inputs", _hostile),
        ("injector", "8. The injector", _injector),
        ("profile", "Profiles", _profile),
    )
    if data["fleet"] is not None:
        plot_fleet(data["fleet"], FLEET_FIGURE)
    for name, title, render in sections:
        section = data[name]
        if section is not None:
            lines += [f"## {title}", "", *render(section), ""]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().strip(), ""]
    RESULTS.write_text("\n".join(lines))
    return RESULTS
