"""`python -m bench [--quick] [--only NAME ...]`: run the suites, then write bench/RESULTS.md.

A full run takes about 24 minutes on two cores (fleet mode alone about 8, hubcompare 4);
`--quick` is a smoke run of about 5 minutes whose figures are too few to quote. Raw figures go
to bench/out/*.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from . import (
    boot,
    detect,
    economy,
    fleet,
    hostile,
    hubcompare,
    injector,
    machine,
    probe,
    profile,
    report,
    soak,
)
from .common import OUT_DIR, Plan

SUITES: Final[dict[str, Callable[[Plan], dict[str, Any]]]] = {
    "probe": probe.run,
    "detect": detect.run,
    "soak": soak.run,
    "boot": boot.run,
    "economy": economy.run,
    "fleet": fleet.run,
    "hostile": hostile.run,
    "profile": profile.run,
    "hubcompare": hubcompare.run,
    "injector": injector.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument(
        "--only", nargs="+", choices=sorted(SUITES), help="run these suites (default: all)"
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="where the JSON goes")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite RESULTS.md from the JSON as it is"
    )
    args = parser.parse_args(argv)
    command = "python -m bench" + (" --quick" if args.quick else "")
    if not args.report_only:
        with tempfile.TemporaryDirectory(prefix="layers-bench-") as tmp:
            plan = Plan(quick=args.quick, tmp=Path(tmp), out=args.out)
            if not args.only:
                plan.save("machine", machine.facts())
            for name in args.only or SUITES:
                started = time.monotonic()
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                result = SUITES[name](plan)
                result["wall_s"] = time.monotonic() - started
                result["quick"] = args.quick
                plan.save(name, result)
                print(f"bench: {name} done in {result['wall_s']:.0f}s", file=sys.stderr)
    path = report.write(args.out, command=command)
    print(f"bench: wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
