"""The report: what the JSON record says about the run itself (date, command, machine, git,
config overrides, optional comparisons) and the Markdown rendering of a finished report (the
main table, the SQLite vs PostgreSQL scale-out table, the header line and the problems)."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import platform
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp

from bench.cases import CONCURRENCY, ROOT, fmt, ratio
from bench.procstat import machine


# ---------------------------------------------------------------- the run's own record
def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def environment(argv: list[str]) -> dict[str, Any]:
    commit = dirty = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, timeout=5).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python -m bench.run " + " ".join(argv),
        "machine": {**machine(), "python": platform.python_version(), "platform": platform.platform(),
                    "aiohttp": aiohttp.__version__, "sqlite": sqlite3.sqlite_version},
        "git": {"commit": commit, "dirty": dirty},
        "concurrency": CONCURRENCY,
    }


def note_overrides(report: dict[str, Any], args: argparse.Namespace) -> None:
    report["config_overrides"] = {k: v for k, v in args.set}


# ---------------------------------------------------------------- Markdown
def table(report: dict[str, Any]) -> str:
    rows: list[Row] = []

    def add(case: str, metric: str, g: float | None, b: float | None, r: float | None = None,
            target: str = "", digits: int = 1) -> None:
        rows.append((case, metric, fmt(g, digits), fmt(b, digits), fmt(r, 2) if r is not None else "", target))

    for name, res in report["cases"].items():
        g, b = res.get("gateway", {}), res.get("bare", {})
        title = f"{res['title']} (n={res['gateway'].get('runs', 0)}/{res['bare'].get('runs', 0)})"
        if name in ("priority", "big") or name.startswith("memory"):  # no bare side
            title = f"{res['title']} (n={res['gateway'].get('runs', 0) if name != 'memory' else 1})"
        if "error" in res:
            rows.append((title, "ERROR", res["error"][:80], "", "", ""))
        if "skipped" in res:
            rows.append((title, "skipped", res["skipped"][:80], "", "", ""))
            continue
        if name == "priority":
            rows.extend(_priority_rows(title, res))
        elif name.startswith("memory"):
            rows.extend(_memory_rows(title, res))
        elif name == "big":
            rows.extend(_big_rows(title, res))
        elif name == "latency":
            add(title, "POST → last arrival, ms", g.get("wall_ms"), b.get("wall_ms"),
                ratio(g.get("wall_ms"), b.get("wall_ms")), "≤ 2×")
            add("", "per-delivery latency p50, ms", g.get("p50_ms"), b.get("p50_ms"))
            add("", "per-delivery latency p99, ms", g.get("p99_ms"), b.get("p99_ms"))
            add("", "POST → 202 (durable commit), ms", g.get("intake_ms"), None)
            add("", "202 → first arrival, ms", g.get("from_202_first_ms"), None)
            add("", "202 → delivery p50, ms", g.get("from_202_p50_ms"), None)
        elif name.startswith(("tp", "pg")):
            add(title, "deliveries/s", g.get("rate"), b.get("rate"), ratio(g.get("rate"), b.get("rate")), "≥ 0.8×")
            add("", "POST → last arrival, s", _s(g.get("wall_ms")), _s(b.get("wall_ms")), None, "", 2)
            add("", "POST → all recorded delivered, s", _s(g.get("recorded_ms")), None, None, "", 2)
            rows.append(("", "per-delivery latency p50 / p99, s",
                         f"{fmt(_s(g.get('p50_ms')), 2)} / {fmt(_s(g.get('p99_ms')), 2)}",
                         f"{fmt(_s(b.get('p50_ms')), 2)} / {fmt(_s(b.get('p99_ms')), 2)}", "", ""))
            add("", "CPU-s per 1,000 deliveries", g.get("cpu_per_1000"), b.get("cpu_per_1000"),
                ratio(g.get("cpu_per_1000"), b.get("cpu_per_1000")), "≤ 0.3", 3)
            add("", "peak RSS, MiB" + (" (largest daemon)" if res.get("instances", 1) > 1 else ""),
                res.get("daemon_peak_rss_mb"), res.get("bare_peak_rss_mb"))
            rows.append(("", "CPU-s per 1,000, machine: daemons + PostgreSQL + receiver + harness + irq/softirq"
                             " + other",
                         _breakdown(g), "", "", ""))
            add("", "machine CPU busy, % of all cores", g.get("machine_busy_pct"), None)
            rows.append(("", "\"other\" CPU-s per 1,000, top commands", _other_top(res), "", "", ""))
            if res.get("store") == "postgres":
                rows.append(("", "duplicates (same id 2xx twice), all runs", str(g.get("dup_2xx_total", "–")),
                             str(b.get("dup_2xx_total", "–")), "", "0"))
                rows.append(("", "PostgreSQL backends, mean busy / idle-in-tx / idle; top wait",
                             _activity(res), "", "", ""))
                rows.append(("", "PostgreSQL busy backends by statement (mean)", _statements(res), "", "", ""))
                if res.get("instances", 1) > 1:
                    rows.append(("", "per-instance share of deliveries, %", _shares(res), "", "", ""))
                    rows.append(("", "peak RSS per daemon, MiB",
                                 " / ".join(fmt(v) for v in res.get("daemons_peak_rss_mb", [])), "", "", ""))
        elif name.startswith("fail503"):
            gd = f"{g.get('all_delivered_runs', 0)}/{g.get('runs', 0)} runs 100%"
            bd = f"{fmt(_pct(b.get('delivered'), res['deliveries']))}% delivered (no retries)"
            rows.append((title, "delivered", gd, bd, "", "100%"))
            rows.append(("", "duplicates (same id 2xx twice), all runs", str(g.get("dup_2xx_total", "–")),
                         str(b.get("dup_2xx_total", "–")), "", "0"))
            add("", "POST → last of 40, s", _s(g.get("wall_ms")), _s(b.get("wall_ms")), None, "≤ 1.5", 2)
            add("", "attempts per run (receiver requests)", g.get("received"), b.get("received"))
    for name, info in report.get("optional", {}).items():
        note = f"{info['version']}: see the comparison table" if info.get("note") == "measured" else info["note"]
        rows.append((name, note, "", "", "", ""))
    head = ("case", "metric", "gateway", "bare loop", "gateway/bare", "target")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


Row = tuple[str, str, str, str, str, str]


def _priority_rows(title: str, res: dict[str, Any]) -> list[Row]:
    """The `priority` case (bench.queued): a red warning behind a 100,000-delivery backlog."""
    g, runs = res.get("gateway", {}), res.get("gateway_runs", [])
    if not runs:
        return []
    worst = max(r["from_202_first_ms"] for r in runs)
    red = int(runs[0]["expected"])
    return [
        (title, "red: 202 → its first arrival at the receiver, ms (median; worst)",
         f"{fmt(g.get('from_202_first_ms'))}; {fmt(worst)}", "–", "",
         f"≤ {fmt(res.get('first_target_ms'), 0)}"),
        ("", "runs within the target", f"{res.get('within_target_runs', 0)}/{len(runs)}", "–", "", ""),
        ("", "red: POST → 202 / POST → first arrival, ms",
         f"{fmt(g.get('red_intake_ms'))} / {fmt(g.get('post_first_ms'))}", "–", "", ""),
        ("", f"yellow still queued (not yet sent) at that arrival, of {res['deliveries']:,}",
         fmt(g.get("yellow_queued_at_first")), "–", "", ""),
        ("", "yellow in flight then (slow receiver, 2 s each)", fmt(g.get("yellow_inflight_at_first")), "–", "", ""),
        ("", f"red: 202 → last of its {red:,} arrivals, s", fmt(g.get("from_202_last_s"), 2), "–", "", ""),
        ("", f"backlog: POST → 202 of the {res['deliveries']:,}-delivery yellow event, s",
         fmt(res.get("backlog_accept_s"), 2), "–", "", ""),
    ]


def _memory_rows(title: str, res: dict[str, Any]) -> list[Row]:
    """The `memory` case (bench.queued): RSS across 10 fan-outs that stay pending."""
    m = res.get("memory")
    if not m:
        return []
    after = m["rss_after_mb"]
    pending = m["by_status"].get("pending", 0) + m["by_status"].get("leased", 0)
    statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(m["by_status"].items()))
    return [
        (title, f"peak RSS (VmHWM) with {pending:,} pending or leased, MiB", fmt(m["peak_rss_mb"]), "–", "",
         "< 200"),
        ("", f"RSS idle / after fan-out 1 / after fan-out {len(after)} / end, MiB",
         " / ".join(fmt(v) for v in (m["rss_idle_mb"], after[0], after[-1], m["rss_end_mb"])), "–", "", ""),
        ("", f"RSS growth fan-out 1 → {len(after)}, MiB", fmt(m["growth_1_to_last_mb"]), "–", "", "≈ 0"),
        ("", f"POST → 202 per {res['deliveries']:,} deliveries, s (median; first / last)",
         f"{fmt(m['accept_median_s'], 2)}; {fmt(m['accept_s'][0], 2)} / {fmt(m['accept_s'][-1], 2)}", "–", "", ""),
        ("", "deliveries in the store at the end", statuses, "–", "", ""),
        ("", "send attempts; daemon CPU-s over the case (POSTs + 5 s)",
         f"{m['attempts']:,.0f}; {fmt(m['cpu_s'], 2)}", "–", "", ""),
    ]


def _big_rows(title: str, res: dict[str, Any]) -> list[Row]:
    """The `big` case (bench.queued): one 100,000-delivery event, POST -> 202 and peak RSS."""
    g, runs = res.get("gateway", {}), res.get("gateway_runs", [])
    if not runs:
        return []
    return [
        (title, f"POST → 202 of {res['deliveries']:,} deliveries, s (median; worst)",
         f"{fmt(g.get('accept_s'), 2)}; {fmt(max(r['accept_s'] for r in runs), 2)}", "–", "",
         f"≤ {fmt(res.get('accept_target_s'), 1)}"),
        ("", "peak RSS while accepting (VmHWM reset before the POST, read after the 202), MiB (median; worst)"
         + (" (not reset: the peak since start-up)" if any(r.get("peak_since_startup") for r in runs) else ""),
         f"{fmt(g.get('peak_rss_mb'))}; {fmt(max(r['peak_rss_mb'] for r in runs))}", "–", "",
         f"< {fmt(res.get('peak_target_mb'), 0)}"),
        ("", "peak RSS at start-up (loading the roster), MiB", fmt(g.get("startup_peak_rss_mb")), "–", "", ""),
        ("", "RSS idle before the POST / after the 202, MiB", f"{fmt(g.get('rss_idle_mb'))} / "
         f"{fmt(g.get('rss_after_mb'))}", "–", "", ""),
        ("", "daemon CPU-s over the POST", fmt(g.get("accept_cpu_s"), 2), "–", "", ""),
    ]


def _breakdown(g: dict[str, Any]) -> str:
    keys = ("cpu_per_1000", "pg_cpu_per_1000", "receiver_cpu_per_1000", "harness_cpu_per_1000",
            "irq_cpu_per_1000", "other_cpu_per_1000")
    parts = " + ".join(fmt(g.get(k), 2) for k in keys)
    return f"{parts} = {fmt(g.get('machine_cpu_per_1000'), 2)}"


def _top_means(res: dict[str, Any], key: str) -> list[tuple[str, float]]:
    """The three largest (name, value) pairs of `key`, averaged over the gateway runs."""
    runs = res.get("gateway_runs", [])
    by: dict[str, float] = {}
    for r in runs:
        for name, v in r.get(key, []):
            by[name] = by.get(name, 0.0) + v / len(runs)
    return sorted(by.items(), key=lambda kv: -kv[1])[:3]


def _other_top(res: dict[str, Any]) -> str:
    """The processes outside the bench that used CPU during the gateway runs (mean over runs)."""
    return ", ".join(f"{comm} {v:.2f}" for comm, v in _top_means(res, "other_top")) or "none"


def _statements(res: dict[str, Any]) -> str:
    top = _top_means(res, "pg_top_statements")
    return "; ".join(f"`{q.replace('|', '/')}…` {v:.2f}" for q, v in top) or "none"


def _shares(res: dict[str, Any]) -> str:
    g = res.get("gateway", {})
    return " / ".join(fmt(g.get(f"share_pct_{i}"), 0) for i in range(res.get("instances", 1)))


def _activity(res: dict[str, Any]) -> str:
    g = res.get("gateway", {})
    runs = res.get("gateway_runs", [])
    waits: Counter[str] = Counter()
    for r in runs:
        for w, v in r.get("pg_top_waits", []):
            waits[w] += v / max(1, len(runs))
    top = ", ".join(f"{w} {v:.2f}" for w, v in waits.most_common(2)) or "none"
    return (f"{fmt(g.get('pg_mean_busy'), 2)} / {fmt(g.get('pg_mean_idle_in_tx'), 2)} / "
            f"{fmt(g.get('pg_mean_idle'), 2)}; {top}")


def scaleout_table(report: dict[str, Any]) -> str:
    """SQLite vs PostgreSQL with 1, 2, 3 instances side by side (issue 5; issue 9 item 6)."""
    head = ("case", "store × instances", "gateway deliveries/s", "bare loop /s (same case)", "gateway/bare",
            "daemon CPU-s per 1,000 (sum)", "PostgreSQL CPU-s per 1,000", "machine CPU busy, %",
            "peak RSS per daemon, MiB", "duplicates", "share per instance, %")
    rows = []
    for name, res in report["cases"].items():
        if not (name.startswith("tp") or name.startswith("pg")) or "skipped" in res:
            continue
        g, b = res.get("gateway", {}), res.get("bare", {})
        store = "SQLite" if res.get("store", "sqlite") == "sqlite" else "PostgreSQL"
        rows.append((
            f"{name} ({res['deliveries']:,}, n={g.get('runs', 0)}/{b.get('runs', 0)})"
            + (" ERROR" if "error" in res else ""),
            f"{store} × {res.get('instances', 1)}", fmt(g.get("rate")), fmt(b.get("rate")),
            fmt(ratio(g.get("rate"), b.get("rate")), 2), fmt(g.get("cpu_per_1000"), 3),
            fmt(g.get("pg_cpu_per_1000"), 3) if store == "PostgreSQL" else "–",
            fmt(g.get("machine_busy_pct"), 0),
            " / ".join(fmt(v) for v in res.get("daemons_peak_rss_mb", [res.get("daemon_peak_rss_mb")])),
            str(g.get("dup_2xx_total", "–")),
            _shares(res) if res.get("instances", 1) > 1 else "100",
        ))
    if not rows:
        return ""
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


_COMPARED = (  # (case, metric, key, divisor, digits)
    ("latency", "40 units: POST → last arrival, ms", "wall_ms", 1.0, 1),
    ("latency", "40 units: per-delivery latency p50, ms", "p50_ms", 1.0, 1),
    ("latency", "40 units: POST answered (gateway 202, Alertmanager 200, Apprise notify() returned), ms",
     "sent_ms", 1.0, 1),
    ("tp2k", "2,000: deliveries/s", "rate", 1.0, 1),
    ("tp2k", "2,000: POST → last arrival, s", "wall_ms", 1000.0, 2),
    ("tp2k", "2,000: CPU-s per 1,000 deliveries (/proc utime + stime)", "cpu_per_1000", 1.0, 3),
    ("latency", "40 units: CPU-s per 1,000 deliveries", "cpu_per_1000", 1.0, 3),
    ("fail503", "40 units, 20% 503s: POST → last of 40, s", "wall_ms", 1000.0, 2),
    ("fail503", "40 units, 20% 503s: attempts per run", "received", 1.0, 1),
)


def comparison_table(report: dict[str, Any]) -> str:
    """Alertmanager and Apprise (bench.compare) next to this run's gateway and bare-loop figures."""
    cases = report.get("cases", {})

    def side(case: str, who: str, key: str) -> float | None:
        v = cases.get(case, {}).get(who, {}).get(key)
        return v if isinstance(v, int | float) else None

    rows: list[Row] = []
    for info in report.get("optional", {}).values():
        if info.get("note") != "measured":
            continue
        mine_rows: list[Row] = []
        for case, metric, key, div, digits in _COMPARED:
            mine = info.get(case)
            if mine is None:
                continue
            t = mine.get(key)
            g = side(case, "gateway", "intake_ms" if key == "sent_ms" else key)
            b = None if key == "sent_ms" else side(case, "bare", key)
            t, g, b = (None if v is None else v / div for v in (t, g, b))
            mine_rows.append(("", metric, fmt(t, digits), fmt(g, digits), fmt(b, digits), fmt(ratio(t, g), 2)))
        if "fail503" in info:
            f, g503 = info["fail503"], cases.get("fail503", {}).get("gateway", {})
            b503 = _pct(side("fail503", "bare", "delivered"), 40)
            mine_rows.append(("", "40 units, 20% 503s: runs with all 40 delivered; duplicates",
                              f"{f['all_delivered_runs']}/{f['n']}; {f['dup_2xx_total']}",
                              f"{g503['all_delivered_runs']}/{g503['runs']}; {g503['dup_2xx_total']}" if g503 else "–",
                              f"{fmt(b503)}% delivered (no retries)" if b503 is not None else "–", ""))
        runs = "/".join(str(info[c]["n"]) for c in ("latency", "tp2k", "fail503") if c in info)
        mine_rows[0] = (f"{info['version']} (n={runs})", *mine_rows[0][1:])
        rows += mine_rows
    if not rows:
        return ""
    head = ("tool", "measure", "tool", "gateway (this run)", "bare loop (this run)", "tool/gateway")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _s(ms: float | None) -> float | None:
    return ms / 1000 if ms is not None else None


def _pct(n: float | None, of: int) -> float | None:
    return 100 * n / of if n is not None and of else None


def header(report: dict[str, Any]) -> str:
    m = report["machine"]
    pg = report.get("postgresql")
    pg_text = (f", PostgreSQL {pg.get('version', '?')} (synchronous_commit {pg.get('synchronous_commit', '?')})"
               if pg else "")
    return (f"{report['date']} · {m['nproc']} CPU ({m['cpu_model']}), {m['mem_gb']} GB · "
            f"Python {m['python']}, aiohttp {m['aiohttp']}, SQLite {m['sqlite']}{pg_text} · "
            f"git {report['git']['commit']}{' (dirty)' if report['git']['dirty'] else ''}\n"
            f"`{report['command']}` · medians over the repeats · concurrency {report['concurrency']}"
            + (f" · config overrides {report['config_overrides']}" if report["config_overrides"] else "")
            + f"\nload average (1 min) at start {report['loadavg_at_start'][0]:.2f}, at end"
              f" {report['loadavg_at_end'][0]:.2f}: other work on the machine skews absolute figures"
            + (f"\nfsync of a 4 KiB append in the bench's directory at the start: p50 {fs['p50']:.2f} ms,"
               f" p90 {fs['p90']:.2f} ms" if (fs := report.get("fsync_ms_at_start")) else ""))


def problems(report: dict[str, Any]) -> Iterator[str]:
    for name, res in report["cases"].items():
        if "error" in res:
            yield f"{name}: {res['error']}"
        for p in res.get("problems", []):
            yield f"{name}: {p}"
        notable = dict(res.get("daemon_log", {}).get("warnings_and_errors", {}))
        if res.get("fail_rate") or res.get("unreachable"):
            notable.pop("warning:delivery_attempt_failed", None)  # the injected 503s, the closed port: expected
        if res.get("unreachable"):
            notable.pop("warning:endpoint_deferred", None)  # the closed port's circuit opens: expected
        if notable:
            yield f"{name}: daemon logged {notable}"
        dups = res.get("gateway", {}).get("dup_2xx_total", 0)
        if dups:
            yield f"{name}: {dups} duplicate deliveries at the receiver (no daemon crashed: should be 0)"
        for side in ("gateway", "bare"):
            bad = sum(r.get("bad_signatures", 0) for r in res.get(f"{side}_runs", []))
            if bad:
                yield f"{name}: {bad} {side} requests failed signature verification"
