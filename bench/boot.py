"""4. The boot check: `layers-sidecar check` from exec to exit 0, beside the upstream's patterns.

hyperfine runs the three in one invocation against one emulator: the sidecar's `check`, the
curl + jq script and the requests script from the upstream's "boot-time sanity check". Two
floors are timed beside them: the interpreter starting with nothing, and with aiohttp imported.
Then `python -X importtime` shows where `check`'s own start-up goes.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import FAKE_KEY, clean_env, emulator

from .common import BENCH_DIR, ROOT, Plan

SIDECAR = str(Path(sys.executable).with_name("layers-sidecar"))


def commands() -> dict[str, list[str]]:
    return {
        "layers-sidecar check": [SIDECAR, "check"],
        "curl + jq (boot-check.sh)": ["bash", str(BENCH_DIR / "boot-check.sh")],
        "requests (boot_check.py)": [sys.executable, str(BENCH_DIR / "boot_check.py")],
        "floor: python -c pass": [sys.executable, "-c", "pass"],
        "floor: python -c 'import aiohttp'": [sys.executable, "-c", "import aiohttp"],
    }


def import_profile(env: dict[str, str]) -> list[dict[str, Any]]:
    """The heaviest top-level imports of `check`, by cumulative microseconds."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sidecar", "check"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    rows: list[dict[str, Any]] = []
    for line in run.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match and len(match.group(3)) <= 2:  # top-level imports only
            rows.append({"module": match.group(4), "cumulative_us": int(match.group(2))})
    rows.sort(key=lambda row: -int(row["cumulative_us"]))
    return rows[:12]


def run(plan: Plan) -> dict[str, Any]:
    runs = plan.count(30, 5)
    with emulator(plan.tmp) as emu:
        emu.set(rateLimitPerMinute=1_000_000)
        env = clean_env(LAYERS_API_KEY=FAKE_KEY, LAYERS_API_URL=emu.url)
        for command in commands().values():  # each must pass, or its timing means nothing
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=30)
        export = plan.tmp / "hyperfine.json"
        hyperfine = [
            "hyperfine",
            "--shell=none",
            "--warmup",
            "3",
            "--runs",
            str(runs),
            "--export-json",
            str(export),
            "--style",
            "none",
        ]
        for name, command in commands().items():
            hyperfine += ["--command-name", name, shlex.join(command)]
        assert shutil.which("hyperfine"), "hyperfine is needed (Debian package hyperfine)"
        subprocess.run(hyperfine, env=env, check=True, capture_output=True)
        timings = json.loads(export.read_text())["results"]
        profile = import_profile(env)
    results = {
        t["command"]: {
            "median_s": t["median"],
            "mean_s": t["mean"],
            "stddev_s": t["stddev"],
            "min_s": t["min"],
            "max_s": t["max"],
            "runs": len(t["times"]),
        }
        for t in timings
    }
    ours = results["layers-sidecar check"]["median_s"]
    return {
        "runs": runs,
        "results": results,
        "ratios": {name: ours / r["median_s"] for name, r in results.items()},
        "import_profile": profile,
    }
