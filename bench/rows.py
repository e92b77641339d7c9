"""What every suite reports: rows of (figure, target, value, met), and how a table of them reads.

A suite keeps its targets beside its figures (one constant each, used both to judge the run and
to say what the target was); the report only renders the rows and sections the suites give.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One headline figure: what it is, what it should be (None: no target), what it was, and
    whether the target was met (None when there is none)."""

    figure: str
    target: str | None
    value: str
    met: bool | None = None


def mark(met: bool) -> str:
    return "**met**" if met else "**missed**"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def table(rows: list[Row]) -> list[str]:
    """The headline table, one line per row."""
    lines = ["| figure | target | result | |", "| --- | --- | --- | --- |"]
    for row in rows:
        verdict = "no target" if row.met is None else mark(row.met)
        lines.append(f"| {row.figure} | {row.target or '—'} | {row.value} | {verdict} |")
    return lines
