"""The benchmark report as a renderer of rows, on canned figures: no benchmark is run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import economy, report, soak
from bench.__main__ import main
from bench.rows import Row, table

ECONOMY: dict[str, Any] = {
    "interval_s": 1.0,
    "window_s": 30.0,
    "spread_per_minute": 0.4,
    "met": True,
    "results": [
        {
            "probe_rate": rate,
            "achieved_probe_rate": float(rate),
            "probe_statuses": {"200": rate * 30} if rate else {},
            "seconds": 30.0,
            "whoami_calls": 30,
            "expected_calls": 30.0,
            "whoami_per_minute": 60.0,
        }
        for rate in economy.RATES
    ],
}


def test_a_table_of_rows_marks_each_target() -> None:
    lines = table([Row("a figure", "≤ 1x", "0.50x", True), Row("another", None, "3 ms")])
    assert lines[2] == "| a figure | ≤ 1x | 0.50x | **met** |"
    assert lines[3] == "| another | — | 3 ms | no target |"


def test_a_suite_s_rows_carry_its_own_targets() -> None:
    result = {
        "polls": 1000,
        "rss_max_mib": 50.0,
        "met_steady": False,
        "growth_mib": 0.5,
        "rss_start_mib": 30.0,
        "rss_end_mib": 30.5,
        "met_growth": True,
        "cpu_ms_per_poll": 0.2,
    }
    steady, growth, cpu = soak.rows(result)
    assert (steady.target, steady.met) == (f"≤ {soak.RSS_CEILING_MIB} MiB", False)
    assert (growth.target, growth.met) == (f"< {soak.GROWTH_LIMIT_MIB} MiB", True)
    assert cpu.met is None


def test_the_report_renders_what_the_run_left(tmp_path: Path) -> None:
    text = report.render({"economy": ECONOMY}, command="python -m bench", figures=False)
    assert "| whoami calls/min at 0, 10, 1,000 probes/s | must not move | 60.0, 60.0, 60.0 |" in (
        text
    )
    assert "## 5. Upstream economy" in text
    assert "## 1. Probe path" not in text  # no JSON for it, no section
    (tmp_path / "economy.json").write_text(json.dumps(ECONOMY))
    written = report.write(tmp_path, command="python -m bench", to=tmp_path / "RESULTS.md")
    assert written.read_text().startswith("# Benchmarks")


def test_python_m_bench_help_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    assert "--report-only" in capsys.readouterr().out
