"""The facts of the machine a run was made on, as RESULTS.md states them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .common import ROOT


def _output(command: list[str]) -> str | None:
    """What a command prints (wrk -v prints to stderr), or None when it is not installed."""
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return (run.stdout or run.stderr).strip()


def _first_line(command: list[str]) -> str:
    text = _output(command)
    if text is None:
        return "not installed"
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def facts() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        # Uncommitted changes to the code under test make the commit above only approximate.
        "sidecar_modified": bool(
            _output(["git", "-C", str(ROOT), "status", "--porcelain", "sidecar"])
        ),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "aiohttp": version("aiohttp"),
        "prometheus_client": version("prometheus-client"),
        "structlog": version("structlog"),
        "requests": version("requests"),
        "wrk": _first_line(["wrk", "-v"]),
        "hyperfine": _first_line(["hyperfine", "--version"]),
        "curl": _first_line(["curl", "--version"]),
        "jq": _first_line(["jq", "--version"]),
        "load_average": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }
