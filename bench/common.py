"""What the suites share: the run's plan, the processes under test, and /proc readings."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.testing import Process, free_port, http, wait_for

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "out"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Two cores: the load generator on one, the server under test on the other, so that they do not
# take turns on one core while the other idles.
CLIENT_CPU, SERVER_CPU = 0, 1


@dataclass(frozen=True)
class Plan:
    quick: bool
    tmp: Path
    out: Path

    def pick(self, full: float, quick: float) -> float:
        return quick if self.quick else full

    def count(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def save(self, name: str, data: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")

    def load(self, name: str) -> dict[str, Any] | None:
        path = self.out / f"{name}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def pin(pid: int, cpu: int) -> None:
    """Keeps a process on one core, when this machine has it."""
    if cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(pid, {cpu})


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
    return float(ordered[rank - 1])


@contextmanager
def python_server(tmp: Path, name: str, module: str, *args: str) -> Iterator[Process]:
    """`python -m module HOST:PORT args`, on a free loopback port, until it answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp / f"{name}.stdout", tmp / f"{name}.stderr"
    proc = subprocess.Popen(
        [sys.executable, "-m", module, f"127.0.0.1:{port}", *args],
        cwd=ROOT,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        stdin=subprocess.DEVNULL,
    )
    process = Process(proc, out, err, url)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited: {process.stderr}")
            http("GET", url + "/", timeout=1)
            return True

        wait_for(up, timeout=15, what=f"{name} to listen")
        yield process
    finally:
        process.stop(signal.SIGKILL)
