"""What the benchmarks print and write: figures formatted, statistics, the results files.

Results go to ``benchmarks/results/`` (``RESULTS``) as JSON (and CSV for samples), for people to
read; nothing in the repository reads them.
"""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orasi_common.bench.engine import percentiles

RESULTS = Path(__file__).resolve().parent / "results"
MIB = 1024 * 1024


def say(message: str) -> None:
    """A progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}{unit}"
    if isinstance(value, int):
        return f"{value:,}{unit}"
    return f"{value}{unit}"


def verdict(ok: bool, miss: str = "FAIL") -> str:
    return "PASS" if ok else miss


def stats_of(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min, max, p90 and count of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "min": ordered[0],
        "max": ordered[-1],
        "p90": ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)],
        "n": len(ordered),
    }


def median_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> tuple[list[float], float]:
    """Per-round ratios (3 decimals) and their median (0.0 without rounds)."""
    ratios = [round(a / b, 3) for a, b in zip(numerators, denominators, strict=True) if b]
    return ratios, round(statistics.median(ratios), 3) if ratios else 0.0


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def write_json(path: Path, figures: dict[str, Any], indent: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=indent, default=str) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


__all__ = [
    "MIB",
    "RESULTS",
    "fmt",
    "machine",
    "median_ratio",
    "percentiles",
    "say",
    "stats_of",
    "verdict",
    "write_csv",
    "write_json",
]
