"""bench/out/*.json → bench/RESULTS.md, bench/results.png and bench/fleet.png.

A renderer of rows: each suite module gives its headline rows (figure, target, value, met; its
targets are constants beside its figures) and its section; this module only lays them out.
Every number comes from the JSON of the run; the prose that explains what limits a figure lives
in bench/analysis.md, written from the profiles, and is copied in as it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from . import (
    boot,
    detect,
    economy,
    fleet_report,
    hostile,
    hubcompare,
    injector,
    probe,
    profile,
    soak,
)
from .common import BENCH_DIR
from .rows import Row, table

RESULTS = BENCH_DIR / "RESULTS.md"
FIGURE = BENCH_DIR / "results.png"
ANALYSIS = BENCH_DIR / "analysis.md"

Result = dict[str, Any]

# Each suite: its JSON name, its section title, and the module with `section` (and `rows`, when
# it has headline figures). In the order of the report.
SUITES: Final[tuple[tuple[str, str, ModuleType], ...]] = (
    ("probe", "1. Probe path", probe),
    ("detect", "2. Detection latency", detect),
    ("soak", "3. Memory and CPU", soak),
    ("boot", "4. Boot check", boot),
    ("economy", "5. Upstream economy", economy),
    ("fleet", "6. Fleet mode", fleet_report),
    ("hostile", "7. Hostile inputs", hostile),
    ("hubcompare", "8. The hub beside nginx and Varnish", hubcompare),
    ("injector", "9. The injector", injector),
    ("profile", "Profiles", profile),
)
# The headline's order (fleet before economy, as the figures were first written).
HEADLINE: Final = ("probe", "detect", "soak", "boot", "fleet", "economy")


def load(out: Path, name: str) -> Result | None:
    path = out / f"{name}.json"
    if not path.exists():
        return None
    data: Result = json.loads(path.read_text())
    return data


def headline(data: dict[str, Result | None]) -> list[Row]:
    modules = {name: module for name, _, module in SUITES}
    found: list[Row] = []
    for name in HEADLINE:
        result = data.get(name)
        if result is not None:
            rows: Callable[[Result], list[Row]] = modules[name].rows
            found += rows(result)
    return found


def preamble(data: dict[str, Result | None], command: str) -> list[str]:
    machine = data.get("machine") or {}
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
    return lines


def render(data: dict[str, Result | None], *, command: str, figures: bool = True) -> str:
    """The whole of RESULTS.md; `figures` also draws the PNGs (needs matplotlib)."""
    lines = [*preamble(data, command), "## Headline", "", *table(headline(data)), ""]
    if figures:
        from . import figures as drawn

        if drawn.plot(data.get("detect"), data.get("soak"), FIGURE):
            lines += [f"![Detection latency and RSS over the soak]({FIGURE.name})", ""]
        fleet = data.get("fleet")
        if fleet is not None:
            fleet_report.plot(fleet, fleet_report.FLEET_FIGURE)
    for name, title, module in SUITES:
        result = data.get(name)
        if result is not None:
            section: Callable[[Result], list[str]] = module.section
            lines += [f"## {title}", "", *section(result), ""]
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().strip(), ""]
    return "\n".join(lines)


def write(out: Path, *, command: str, to: Path = RESULTS) -> Path:
    names = ("machine", *(name for name, _, _ in SUITES))
    data = {name: load(out, name) for name in names}
    to.write_text(render(data, command=command))
    return to
