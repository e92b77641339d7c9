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

from sidecar.testing import FAKE_KEY, clean_env, emulator

from .common import BENCH_DIR, ROOT, Plan
from .rows import Row, ms

SIDECAR = str(Path(sys.executable).with_name("layers-sidecar"))
CHECK = "layers-sidecar check"
MINIMAL = "minimal aiohttp check (aiohttp_check.py)"
CLI_IMPORT = "python -c 'import sidecar.cli'"
ARGPARSE = "python -c 'import argparse'"
# The targets: `check` within 1.15x of the minimal aiohttp script, and importing the CLI module
# no heavier than importing argparse (each command imports its own code when it runs).
CHECK_TARGET = 1.15
CLI_TARGET = 1.0


def commands() -> dict[str, list[str]]:
    return {
        CHECK: [SIDECAR, "check"],
        "curl + jq (boot-check.sh)": ["bash", str(BENCH_DIR / "boot-check.sh")],
        "requests (boot_check.py)": [sys.executable, str(BENCH_DIR / "boot_check.py")],
        MINIMAL: [sys.executable, str(BENCH_DIR / "aiohttp_check.py")],
        "floor: python -c pass": [sys.executable, "-c", "pass"],
        "floor: python -c 'import aiohttp'": [sys.executable, "-c", "import aiohttp"],
        CLI_IMPORT: [sys.executable, "-c", "import sidecar.cli"],
        ARGPARSE: [sys.executable, "-c", "import argparse"],
    }


def import_profile(env: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Where `check`'s imports go: what the CLI pulls in directly, and the heaviest modules."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sidecar", "check"],
        env=env,
        capture_output=True,
        text=True,
        check=False,  # the imports are the same whatever the check's verdict
        cwd=ROOT,
    )
    rows: list[dict[str, Any]] = []
    for line in run.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append(
                {
                    "module": match.group(4),
                    "own_ms": int(match.group(1)) / 1000,
                    "cumulative_ms": int(match.group(2)) / 1000,
                    "depth": (len(match.group(3)) - 1) // 2,
                }
            )
    # Depth 0 is sidecar.cli itself (and the interpreter's own start-up); depth 1 is what it
    # imports, so the first to import a library pays for it.
    direct = [row for row in rows if row["depth"] <= 1]
    direct.sort(key=lambda row: -float(row["cumulative_ms"]))
    heaviest = sorted(rows, key=lambda row: -float(row["own_ms"]))
    return {"direct": direct[:12], "heaviest_own": heaviest[:8]}


def run(plan: Plan) -> dict[str, Any]:
    runs = plan.count(30, 5)
    # As installed: pip (and the image) compile the package to bytecode, as they do aiohttp. A
    # checkout run with PYTHONDONTWRITEBYTECODE would otherwise compile sidecar/ from source on
    # every start and time the compiler, not the program.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "sidecar")], check=True)
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
            # CPU time (mean user + system): steadier than wall time on a shared machine.
            "cpu_s": t["user"] + t["system"],
            "runs": len(t["times"]),
        }
        for t in timings
    }
    ours = results[CHECK]["median_s"]
    check_ratio = ours / results[MINIMAL]["median_s"]
    check_cpu_ratio = results[CHECK]["cpu_s"] / results[MINIMAL]["cpu_s"]
    cli_ratio = results[CLI_IMPORT]["median_s"] / results[ARGPARSE]["median_s"]
    cli_cpu_ratio = results[CLI_IMPORT]["cpu_s"] / results[ARGPARSE]["cpu_s"]
    return {
        "runs": runs,
        "results": results,
        "ratios": {name: ours / r["median_s"] for name, r in results.items()},
        "targets": {
            "check_vs_minimal_aiohttp": {
                "ratio": check_ratio,
                "target": CHECK_TARGET,
                "met": check_ratio <= CHECK_TARGET,
                "cpu_ratio": check_cpu_ratio,
            },
            "cli_import_vs_argparse": {
                "ratio": cli_ratio,
                # "Heavier" is judged on CPU time: for a 30 ms process on a shared machine the
                # wall time's spread (several ms) is larger than the difference being measured.
                "cpu_ratio": cli_cpu_ratio,
                "target": CLI_TARGET,
                "met": cli_cpu_ratio <= CLI_TARGET,
            },
        },
        "import_profile": profile,
    }


def rows(boot: dict[str, Any]) -> list[Row]:
    r = boot["ratios"]
    ours = boot["results"][CHECK]["median_s"]
    found: list[Row] = []
    targets = boot.get("targets")
    if targets is not None:
        minimal = targets["check_vs_minimal_aiohttp"]
        cli = targets["cli_import_vs_argparse"]
        cpu = minimal.get("cpu_ratio")
        found += [
            Row(
                "`check` wall time vs a minimal aiohttp script",
                f"≤ {minimal['target']:.2f}x",
                f"{minimal['ratio']:.2f}x ({ms(ours)})"
                + (f"; CPU time {cpu:.2f}x" if cpu is not None else ""),
                minimal["met"],
            ),
            Row(
                "`import sidecar.cli` vs `import argparse` (CPU time)",
                f"≤ {cli['target']:.2f}x",
                f"{cli.get('cpu_ratio', cli['ratio']):.2f}x (wall {cli['ratio']:.2f}x)",
                cli["met"],
            ),
        ]
    found.append(
        Row(
            "`check` wall time vs curl + jq / requests",
            None,
            f"{ms(ours)}: {r['curl + jq (boot-check.sh)']:.2f}x / "
            f"{r['requests (boot_check.py)']:.2f}x",
        )
    )
    return found


def section(boot: dict[str, Any]) -> list[str]:
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
            f"| {name} | {ms(r['median_s'])} | {ms(r['mean_s'])} ± {ms(r['stddev_s'])} | "
            f"{ms(r['min_s'])} | {boot['ratios'][name]:.2f} |"
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
