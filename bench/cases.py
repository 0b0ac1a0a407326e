"""The benchmark's cases and shared constants, and the pure statistics over its runs.

- `Case`, `CASES`, `DEFAULT_CASES` (what `python -m bench.run` runs without `--cases`) and
  `OPTIONAL` (the comparisons that are only noted); `UNITS`, `CONCURRENCY` and `ROOT`.
- `percentile`, `median_of`, `run_stats` and `summarise`: the figures of one run and the
  medians of a case; `fmt` and `ratio`: number formatting for the report.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UNITS = 40
CONCURRENCY = 50


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    endpoints: int  # webhook endpoints per roster unit: deliveries = 40 x endpoints
    repeats: tuple[int, int]  # (full, quick)
    timeout: float  # hard limit for the whole case, seconds
    fail_rate: float = 0.0
    warmup: bool = True  # one uncounted run of each side first
    dispatch: dict[str, Any] = field(default_factory=dict)  # extra dispatch.* config
    store: str = "sqlite"  # "sqlite": a fresh file per case; "postgres": a fresh database per case
    instances: int = 1  # daemons sharing the store (PostgreSQL only), each with dispatch.concurrency 50
    kind: str = "fanout"  # "fanout": gateway vs bare runs; "priority", "memory", "big": bench.queued, no bare side
    unreachable: bool = False  # endpoints on a closed local port instead of the receiver

    @property
    def deliveries(self) -> int:
        return UNITS * self.endpoints


CASES: dict[str, Case] = {c.name: c for c in (
    Case("latency", "40-unit fan-out", 1, (15, 7), 60),
    Case("tp2k", "2,000 deliveries", 50, (5, 3), 120),
    Case("tp10k", "10,000 deliveries (issue 2's synthetic recipients)", 250, (3, 1), 240, warmup=False),
    # no warm-up: 20,000 requests amortise a cold pool, and it would double the case's time
    Case("tp20k", "20,000 deliveries", 500, (3, 1), 300, warmup=False),
    Case("fail503", "40 units, 20% 503s (default backoff 0.2 s x 3^n)", 1, (5, 3), 120, fail_rate=0.2),
    Case("fail503slow", "40 units, 20% 503s (backoff 1 s x 2^n, the default before 2026-11-28)", 1, (5, 3), 120,
         fail_rate=0.2, dispatch={"backoff_initial": 1.0, "backoff_base": 2.0}),
    # scale-out (issue 5, issue 9 item 6): one fresh PostgreSQL database per case, N daemons on it
    *(Case(f"pg{n}", f"20,000 deliveries, PostgreSQL, {n} instance{'s' if n > 1 else ''}", 500, (3, 1), 420,
           warmup=False, store="postgres", instances=n) for n in (1, 2, 3)),
    *(Case(f"pg{n}_2k", f"2,000 deliveries, PostgreSQL, {n} instance{'s' if n > 1 else ''}", 50, (5, 3), 180,
           store="postgres", instances=n) for n in (1, 2, 3)),
    # queue cases (bench.queued, issue 9 items 3 and 5): a 100,000-delivery backlog, no bare side
    Case("priority", "red warning behind 100,000 queued yellow", 2500, (5, 3), 420, warmup=False,
         kind="priority"),
    Case("big", "one event of 100,000 deliveries (fresh daemon each repeat)", 2500, (3, 1), 300, warmup=False,
         kind="big"),
    Case("memory", "10 fan-outs of 10,000, kept pending (receiver answers after 5 s)", 250, (1, 1), 300,
         warmup=False, kind="memory"),
    Case("memory_down", "10 fan-outs of 10,000, endpoint unreachable (closed port: retries)", 250, (1, 1), 300,
         warmup=False, kind="memory", unreachable=True),
)}
# `make bench` / no --cases: everything but the 2,000-delivery PostgreSQL variants (the queue cases
# take about 15 s each)
DEFAULT_CASES = [name for name in CASES if not name.endswith("_2k")]
OPTIONAL = ("apprise", "alertmanager")


# ---------------------------------------------------------------- statistics and formatting
def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in runs if isinstance(r.get(key), int | float)]
    return statistics.median(vals) if vals else None


def run_stats(arrivals: list[float], t0: float, expected: int) -> dict[str, Any]:
    """Wall time to the last first-2xx arrival, rate and per-delivery latency, all from t0."""
    lat = [(a - t0) * 1000 for a in arrivals]
    wall = max(lat) if lat else None
    return {
        "delivered": len(arrivals),
        "expected": expected,
        "wall_ms": wall,
        "rate": len(arrivals) / (wall / 1000) if wall else None,
        "p50_ms": percentile(lat, 50),
        "p99_ms": percentile(lat, 99),
    }


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Medians of every numeric figure over each side's runs, plus run and duplicate counts."""
    for side in ("gateway", "bare"):
        runs = result[f"{side}_runs"]
        keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, int | float)})
        result[side] = {k: median_of(runs, k) for k in keys}
        result[side]["runs"] = len(runs)
        result[side]["all_delivered_runs"] = sum(1 for r in runs if r["delivered"] == r["expected"])
        result[side]["dup_2xx_total"] = sum(r.get("dup_2xx", 0) for r in runs)
    return result


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000 and digits <= 1:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
