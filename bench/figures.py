"""The results figure (bench/results.png): detection latency per flip, and RSS over the soak."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .soak import GROWTH_LIMIT_MIB, RSS_CEILING_MIB


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
        right.axhline(
            RSS_CEILING_MIB, color="red", linestyle="--", label=f"target: {RSS_CEILING_MIB} MiB"
        )
        right.axhline(
            soak["rss_start_mib"] + GROWTH_LIMIT_MIB,
            color="orange",
            linestyle=":",
            label=f"start + {GROWTH_LIMIT_MIB} MiB",
        )
        right.set_ylim(0, max(RSS_CEILING_MIB + 5, max(rss) + 5))
        right.set_xlabel(f"whoami polls (--interval {soak['interval']})")
        right.set_ylabel("RSS (MiB)")
        right.set_title("Memory over the soak")
        right.legend(loc="lower right")
        right.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True
