"""Benchmark: the real gateway daemon vs a bare aiohttp loop, side by side in one run.

    python -m bench.run [--quick] [--cases latency tp2k ...] [--out bench/results/latest.json]

Three processes besides this one, all on 127.0.0.1: the webhook receiver (`bench.receiver`),
the gateway daemon (`python -m gateway run`, one per case, fresh SQLite file, durable
`synchronous=FULL`) and the bare loop (`bench.bare`). Gateway and bare runs alternate
(G,B then B,G ...); every figure is the median over the repeats. See bench/README.md.

The `pg1`/`pg2`/`pg3` cases run 1, 2 or 3 daemons on one fresh PostgreSQL database (created
and dropped by `bench.cluster`), the event POSTed to the first; CPU is summed over all daemons,
and the run's CPU is split into daemons / PostgreSQL / receiver / harness / rest of the machine.
The queue cases (`priority`, `memory`, `memory_down`: bench.queued) have no bare side; the
optional comparisons (`alertmanager`, `apprise`: bench.compare) run where installed.
"""

# Entry point only (flags, the case loop, the JSON and stdout); the pieces: bench.cases (cases,
# statistics), bench.harness (`Bench`: runs one case), bench.children (receiver and bare-loop
# processes), bench.report (the run's record, Markdown tables), bench.profiling (py-spy, log digest),
# bench.cluster (PostgreSQL scale-out), bench.procstat (/proc), bench.queued (priority, memory),
# bench.compare (Alertmanager, Apprise).

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.breakdown import EVENTS as BREAKDOWN_CASES
from bench.breakdown import breakdown_table
from bench.cases import CASES, DEFAULT_CASES, OPTIONAL, ROOT, fmt
from bench.cluster import ADMIN_URL, server_info
from bench.compare import notes, run_comparisons
from bench.harness import Bench
from bench.procstat import fsync_ms
from bench.report import (
    comparison_table,
    environment,
    header,
    note_overrides,
    problems,
    scaleout_table,
    stamp,
    table,
)


async def amain(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    report = environment(argv)
    report["loadavg_at_start"] = os.getloadavg()
    # SIGTERM (e.g. from `timeout`) cancels the run: daemons stopped, throwaway databases dropped
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    note_overrides(report, args)
    report["cases"] = {}
    report["optional"] = notes()
    if any(CASES[name].store == "postgres" for name in args.cases):
        report["postgresql"] = {"admin_url": ADMIN_URL, **await server_info()}
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    report["fsync_ms_at_start"] = fsync_ms(str(workdir))
    try:
        async with Bench(args, workdir) as bench:
            for name in args.cases:
                case = CASES[name]
                repeats = args.repeats or case.repeats[1 if args.quick else 0]
                runs = f"{repeats} gateway + {repeats} bare runs" if case.kind == "fanout" else "no bare side"
                print(f"· {case.title}: {runs} ...", file=sys.stderr, flush=True)
                report["cases"][name] = res = await bench.run_case(case, repeats)
                print(f"  {res['seconds']}s; {progress(res)}" + (f"; ERROR {res['error']}" if "error" in res else ""),
                      file=sys.stderr, flush=True)
            if args.compare:
                print(f"· optional comparisons: {', '.join(args.compare)} ...", file=sys.stderr, flush=True)
                report["optional"] = await run_comparisons(bench, args.compare, workdir, args.quick)
                for tool, info in report["optional"].items():
                    print(f"  {tool}: {info['note']}", file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


def progress(res: dict[str, Any]) -> str:
    """One line about a finished case for stderr."""
    g, b = res["gateway"], res["bare"]
    if "memory" in res:
        m = res["memory"]
        return (f"RSS idle {fmt(m['rss_idle_mb'])} MiB, after fan-out 1 {fmt(m['rss_after_mb'][0])}, after the last"
                f" {fmt(m['rss_after_mb'][-1])}, peak {fmt(m['peak_rss_mb'])} MiB")
    if res.get("kind") == "big":
        return f"POST -> 202 {fmt(g.get('accept_s'), 2)} s, peak RSS {fmt(g.get('peak_rss_mb'))} MiB (medians)"
    if "backlog_accept_s" in res:
        return (f"backlog accepted in {fmt(res['backlog_accept_s'], 2)} s; 202 -> first red arrival"
                f" {fmt(g.get('from_202_first_ms'))} ms (median)")
    return (f"gateway wall {fmt(g.get('wall_ms'))} ms, {fmt(g.get('rate'))}/s;"
            f" bare wall {fmt(b.get('wall_ms'))} ms, {fmt(b.get('rate'))}/s")


def config_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError("expected KEY=VALUE, e.g. dispatch.concurrency=100")
    return key.strip(), yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer repeats (whole run about 3-4 minutes, PostgreSQL cases included)")
    parser.add_argument("--cases", nargs="+", choices=[*CASES, *OPTIONAL], default=None,
                        help="cases to run (default: all but the pg*_2k variants; alertmanager and apprise where"
                             " installed)")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats of every case")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured runs, one extra gateway run under py-spy (tp20k by default)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="sample only the thread holding the GIL (Python CPU), not every busy thread")
    parser.add_argument("--profile-cases", nargs="+", default=["tp20k"],
                        choices=[name for name, c in CASES.items() if c.kind == "fanout"])
    parser.add_argument("--breakdown", nargs="*", default=list(BREAKDOWN_CASES), metavar="CASE",
                        choices=[name for name, c in CASES.items() if c.kind == "fanout"],
                        help="cases whose cost breakdown by stage is measured under py-spy after their runs"
                             " (default: latency tp2k, when they run; `--breakdown` alone: none)")
    parser.add_argument("--set", type=config_override, action="append", default=[], metavar="KEY=VALUE",
                        help="override a daemon config key for every case, e.g. store.synchronous=NORMAL"
                             " (for experiments; the reference figures use the defaults)")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' data dirs and logs")
    args = parser.parse_args(argv)
    args.compare = list(OPTIONAL) if args.cases is None else [c for c in args.cases if c in OPTIONAL]
    args.cases = [c for c in (args.cases or DEFAULT_CASES) if c in CASES]
    args.results = args.out.parent
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    try:
        report = asyncio.run(amain(args, argv))
    except (asyncio.CancelledError, KeyboardInterrupt):
        print("interrupted: daemons stopped, throwaway databases dropped; no report", file=sys.stderr)
        return 130
    report["seconds"] = round(time.monotonic() - started, 1)
    report["loadavg_at_end"] = os.getloadavg()
    report["table"] = table(report)
    report["scaleout_table"] = scaleout_table(report)
    report["comparison_table"] = comparison_table(report)
    report["breakdown_table"] = breakdown_table(report["cases"])
    found = list(problems(report))
    report["problems"] = found
    text = json.dumps(report, indent=2, ensure_ascii=False, default=str)
    args.out.write_text(text)
    (args.results / f"{stamp()}.json").write_text(text)
    print(header(report))
    print()
    print(report["table"])
    if report["scaleout_table"]:
        print("\nSQLite vs PostgreSQL × instances (each row's bare loop ran in the same case):\n")
        print(report["scaleout_table"])
    if report["comparison_table"]:
        print("\nOptional comparisons (each tool against a receiver without signature checks; gateway and bare"
              " loop from this run's latency, tp2k and fail503 cases):\n")
        print(report["comparison_table"])
    if report["breakdown_table"]:
        print("\nCost breakdown: daemon CPU by stage (py-spy samples of every busy thread, scaled to each"
              " thread's CPU from /proc; bench/breakdown.py):\n")
        print(report["breakdown_table"])
    for name, res in report["cases"].items():
        if "skipped" in res.get("breakdown", {}):
            print(f"\nbreakdown ({name}): skipped: {res['breakdown']['skipped']}")
    if found:
        print("\nproblems:\n" + "\n".join(f"- {p}" for p in found))
    for name, res in report["cases"].items():
        prof = res.get("profile")
        if prof:
            print(f"\nprofile ({name}): {prof.get('file') or prof.get('skipped')}")
            for f, _n, pct in prof.get("top_self", [])[:15]:
                print(f"  {pct:5.1f}%  {f}")
    print(f"\nwhole run {report['seconds']} s; JSON: {args.out}")
    return 1 if any("error" in r for r in report["cases"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
