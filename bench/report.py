"""How every benchmark reports: human tables on stdout, then exactly one JSON object on the last line.

Progress goes to stderr. A benchmark exits 0 when it measured (whether or not its budgets hold:
the JSON line says), 2 when a measurement could not be made.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Scale(StrEnum):
    TINY = "tiny"  # seconds: the smoke run in `make test`, figures meaningless
    FULL = "full"  # what `make bench` runs and docs/performance.md quotes


class BenchError(Exception):
    """A measurement could not be made (as opposed to a budget not being met)."""


@dataclass(frozen=True)
class Budget:
    """A figure and the most it may be (`value <= limit` holds), or with `at_least` the least."""

    name: str
    value: float
    limit: float
    unit: str = "x"
    at_least: bool = False

    @property
    def holds(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    @property
    def relation(self) -> str:
        return ">=" if self.at_least else "<="

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": round(self.value, 3) if math.isfinite(self.value) else None,  # None: could not be judged
            "limit": self.limit,
            "unit": self.unit,
            "holds": self.holds,
            "at_least": self.at_least,
        }


@dataclass(frozen=True)
class Table:
    title: str
    header: Sequence[str]
    rows: Sequence[Sequence[object]]

    def lines(self) -> list[str]:
        cells = [[str(c) for c in self.header], *[[_cell(c) for c in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]
        out = [self.title, "  ".join("-" * w for w in widths)]
        for index, row in enumerate(cells):
            # Numbers right-aligned, words left-aligned.
            out.append(
                "  ".join(
                    cell.rjust(w) if index and _numeric(cell) else cell.ljust(w)
                    for cell, w in zip(row, widths, strict=True)
                ).rstrip()
            )
            if index == 0:
                out.append("  ".join("-" * w for w in widths))
        return out


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _numeric(cell: str) -> bool:
    return cell.replace(",", "").replace(".", "").replace("-", "").replace("x", "").replace("%", "").isdigit()


def non_finite(value: Any, path: str = "") -> list[str]:
    """Where in a report's JSON a float is infinite or NaN (JSON has no such number), with its value."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [f"{path or '.'} = {value}"]
    if isinstance(value, dict):
        return [bad for key, inner in value.items() for bad in non_finite(inner, f"{path}.{key}")]
    if isinstance(value, (list, tuple)):
        return [bad for index, inner in enumerate(value) for bad in non_finite(inner, f"{path}[{index}]")]
    return []


@dataclass
class Report:
    bench: str
    scale: Scale
    figures: dict[str, Any] = field(default_factory=dict)
    budgets: list[Budget] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)  # the few figures docs/performance.md quotes
    emulator: str = ""  # what answered the AWS calls, for benchmarks that run the local stack
    seconds: float = 0.0

    @property
    def holds(self) -> bool | None:
        """None when this benchmark judges no budget (throughput)."""
        return all(b.holds for b in self.budgets) if self.budgets else None

    def as_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "scale": self.scale.value,
            "holds": self.holds,
            "budgets": [b.as_json() for b in self.budgets],
            "figures": self.figures,
            "notes": self.notes,
            "headline": self.headline,
            "emulator": self.emulator,
            "seconds": round(self.seconds, 1),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        }

    def json_line(self) -> str:
        data = self.as_json()
        bad = non_finite(data)
        if bad:
            raise BenchError(f"bench.{self.bench}: figures that are not finite numbers: {', '.join(bad)}")
        return json.dumps(data, allow_nan=False, separators=(",", ":"))

    def text(self) -> str:
        lines: list[str] = [f"== bench.{self.bench} ({self.scale.value}, {self.seconds:.1f} s)"]
        if self.emulator:
            lines.append(f"AWS answered by: {self.emulator}")
        for table in self.tables:
            lines += ["", *table.lines()]
        if self.budgets:
            lines += ["", *budget_table(self.budgets).lines()]
        if self.notes:
            lines += ["", *(f"* {note}" for note in self.notes)]
        return "\n".join(lines)


def budget_table(budgets: Sequence[Budget]) -> Table:
    return Table(
        "Budgets",
        ("budget", "value", "limit", "holds"),
        [
            (b.name, f"{b.value:.2f}{b.unit}", f"{b.relation} {b.limit:g}{b.unit}", "yes" if b.holds else "NO")
            for b in budgets
        ],
    )


def progress(message: str) -> None:
    """Progress goes to stderr: stdout holds only the tables and the JSON line."""
    print(message, file=sys.stderr, flush=True)


def main(
    bench: str,
    measure: Callable[[argparse.Namespace], Report],
    description: str,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """A benchmark's command line: `python -m bench.<name> [--scale tiny|full]`; `measure` gets the
    parsed arguments (`.scale`, and whatever `add_arguments` added)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m bench.{bench}", description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=Scale, choices=list(Scale), default=Scale.FULL)
    if add_arguments:
        add_arguments(parser)
    arguments = parser.parse_args()
    started = time.perf_counter()
    try:
        report = measure(arguments)
    except BenchError as error:
        progress(f"bench.{bench}: {error}")
        return 2
    except Exception:
        progress(f"bench.{bench}: measurement failed\n{traceback.format_exc()}")
        return 2
    report.seconds = time.perf_counter() - started
    print(report.text())
    print(report.json_line(), flush=True)
    return 0
