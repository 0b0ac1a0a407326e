"""Where one event's and one delivery's time and CPU go, stage by stage (issue 19 item 1).

After a case's measured runs, the harness POSTs `events` more fan-outs to the same daemon with
`py-spy record` attached (every busy thread: the event loop and the SQLite thread, full file
names), then maps each sampled stack to one stage by its frames' modules and functions
(`STAGES`, innermost match first) and to one phase: on the request path (under the POST
handler, or the store transaction that records the event) or after the 202.

Samples are turned into CPU by thread: each thread's CPU over the profiled runs comes from
`/proc/<pid>/task/<tid>/stat` and is spread over that thread's samples, so the figures add up
to the daemon's measured CPU (py-spy's rate is only the resolution). The bench's own requests
to the daemon (polling the event list until everything is recorded) are left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import linecache
import os
import re
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.cases import fmt
from bench.procstat import cpu_seconds
from bench.report import stamp

if TYPE_CHECKING:
    from bench.harness import Bench
    from tests.support.daemon import Daemon

RATE = 1000  # py-spy samples per second
EVENTS = {"latency": 60, "tp2k": 5}  # profiled fan-outs per case (about 3 s of daemon CPU each)
BREAKDOWN_EXTRA_S = 180.0  # added to the case's hard timeout
REQUEST, AFTER = "request", "after"
FSYNC = "fsync"  # attribute()'s (FSYNC, phase) keys: seconds blocked in COMMIT, not CPU
# what is left at the wake-up points once the time queued for a core is taken out (see `attribute`)
LOOP_C = "event loop C code (uvloop: socket I/O, callbacks), store thread wake-ups"

# (stage, what a frame's path contains, or None; the function name it starts with, or None).
# A stack's stage is the first rule matched by its innermost frame that matches any rule, so
# the more specific stages (sign, metrics/logs) win over the code that calls them.
STAGES: tuple[tuple[str, str | None, str | None], ...] = (
    ("metrics/logs", "prometheus_client", None),
    ("metrics/logs", "structlog", None),
    ("metrics/logs", "/logging/", None),
    ("metrics/logs", "gateway/logs.py", None),
    ("metrics/logs", "gateway/metrics.py", None),
    ("metrics/logs", "provider_metrics.py", None),
    ("sign", "channels/signing.py", None),
    ("sign", "/hmac.py", None),
    ("sign", "/base64.py", None),
    ("sign", "gateway/acklinks.py", None),
    ("render", "gateway/render.py", None),
    ("render", "gateway/templates_cn.py", None),
    ("render", "jinja2", None),
    ("render", "markupsafe", None),
    ("render", "gateway/cap_out.py", None),
    ("render", "channels/webhook.py", "_encode_body"),
    ("parse/validate", "pydantic", None),
    ("parse/validate", "gateway/events.py", None),
    ("parse/validate", "gateway/auth.py", None),
    ("parse/validate", "gateway/api/", "read_json"),
    ("parse/validate", "gateway/api/", "parse_event"),
    ("parse/validate", "gateway/api/", "require"),
    ("plan", "gateway/planner.py", None),
    ("plan", "gateway/flows/planner.py", None),
    ("plan", "gateway/policy.py", None),
    ("plan", "gateway/flows/deliveries.py", None),
    ("plan", "contacts/", None),
    ("commit", None, "<commit>"),  # a store frame on its BEGIN/COMMIT line (see `_stage`)
    ("claim", "gateway/store/", "claim"),
    ("claim", None, "Dispatcher._claim"),
    ("outcome write", "gateway/store/", "finish"),
    ("outcome write", None, "SqliteStore.finish"),
    ("outcome write", None, "Dispatcher._flush_loop"),
    ("outcome write", None, "Dispatcher._finish_with_retry"),
    ("outcome write", None, "Dispatcher._record"),
    ("store write", None, "SqliteStore.record_event"),
    ("store write", "gateway/store/", "record_event"),
    ("store write", "gateway/store/", "append_audit"),
    ("store write", "gateway/store/common.py", None),
    ("store thread hop", "gateway/store/sqlite.py", "SqliteStore._run"),
    ("store thread hop", "gateway/store/sqlite.py", "SqliteStore._call"),
    ("store thread hop", "concurrent/futures/", None),
    ("hand-off", None, "Dispatcher.handoff"),
    ("hand-off", None, "Dispatcher.adopt"),
    ("hand-off", None, "Dispatcher._start"),
    ("hand-off", None, "Dispatcher._done"),
    ("plan", "gateway/intake.py", None),
    ("plan", "gateway/flows/intake.py", None),
    ("plan", "gateway/runtime.py", "new_event"),
    ("HTTP send", "channels/webhook.py", None),
    ("HTTP send", "aiohttp/client", None),
    ("HTTP send", "aiohttp/connector.py", None),
    ("HTTP send", "aiohappyeyeballs", None),
    ("HTTP send", "yarl", None),
    ("attempt", "gateway/attempts.py", None),
    ("attempt", "gateway/dispatch/attempts.py", None),
    ("attempt", "gateway/dispatch/failover.py", None),
    ("attempt", "channels/base.py", None),
    ("dispatch loop", "gateway/dispatcher.py", None),
    ("dispatch loop", "gateway/dispatch/", None),
)
# Only when nothing above matched anywhere in the stack.
FALLBACK: tuple[tuple[str, str | None, str | None], ...] = (
    ("HTTP server (aiohttp)", "aiohttp/web", None),
    ("HTTP server (aiohttp)", "aiohttp/http_parser", None),
    ("HTTP server (aiohttp)", "gateway/api/", None),
    ("HTTP I/O (aiohttp streams, writer)", "aiohttp/", None),
    ("event loop (asyncio, Python)", "asyncio/", None),
)
ORDER = ("parse/validate", "plan", "render", "store write", "commit", "store thread hop", "hand-off", "claim",
         "attempt", "sign", "HTTP send", "outcome write", "metrics/logs", "dispatch loop",
         "HTTP server (aiohttp)", "HTTP I/O (aiohttp streams, writer)", "event loop (asyncio, Python)", LOOP_C, "other")
# the bench's own requests to the daemon (polling), left out of the figures
EXCLUDED = ("list_events", "get_event", "metrics", "readyz", "healthz", "event_view")


@dataclass(frozen=True, slots=True)
class Frame:
    func: str
    path: str
    line: int


def parse_frame(text: str) -> Frame:
    """`func (path:line)` as py-spy writes it; a frame without a location keeps an empty path."""
    func, sep, rest = text.rpartition(" (")
    if not sep or not rest.endswith(")"):
        return Frame(text, "", 0)
    path, _, line = rest[:-1].rpartition(":")
    return Frame(func, path, int(line) if line.isdigit() else 0)


def _matches(f: Frame, where: str | None, func: str | None) -> bool:
    if where is not None and where not in f.path:
        return False
    if func is None:
        return True
    if func == "<commit>":
        if "gateway/store/" not in f.path:
            return False
        src = linecache.getline(f.path, f.line).upper()
        return "COMMIT" in src or "BEGIN" in src
    return func in f.func


def stage_of(frames: list[Frame]) -> str:
    """The stage of one stack (root first)."""
    for rules in (STAGES, FALLBACK):
        for f in reversed(frames):
            for stage, where, func in rules:
                if _matches(f, where, func):
                    return stage
    return "other"


def phase_of(frames: list[Frame]) -> str | None:
    """REQUEST (before the 202), AFTER, or None for the bench's own polling requests."""
    names = [f.func.rsplit(".", 1)[-1] for f in frames]
    for f, name in zip(frames, names, strict=True):
        if name in EXCLUDED and ("gateway/api/" in f.path or "gateway/store/" in f.path):
            return None
        if "<locals>" in f.func and any(f".{x}.<locals>" in f.func for x in EXCLUDED):
            return None
    if any(n == "post_event" for n in names) or any("record_event" in f.func for f in frames):
        return REQUEST
    return AFTER


def thread_times(pid: int) -> dict[str, tuple[float, float]]:
    """(seconds on a CPU, seconds runnable but waiting for one) of every thread of `pid`, by
    native thread id, from /proc/<pid>/task/<tid>/schedstat."""
    out: dict[str, tuple[float, float]] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
                    run, wait = f.read().split()[:2]
                out[tid] = (int(run) / 1e9, int(wait) / 1e9)
    return out


def _waiting(f: Frame) -> bool:
    """A leaf where a thread resumes after sleeping (the event loop's C code around epoll, the
    store thread's work queue) or wakes another (handing work to the store thread): while the
    machine is busy, a thread there queues for a core and is sampled without using one."""
    if f.func in ("Runner.run", "ThreadPoolExecutor.submit") or "uvloop" in f.path:
        return True
    if f.func == "_worker" and "concurrent/futures/" in f.path:
        return ".get(" in linecache.getline(f.path, f.line)
    return f.func.endswith(("Condition.wait", "Event.wait")) and "/threading.py" in f.path


Key = tuple[str, str]


def thread_samples(frames_table: list[Frame], samples: list[list[int]]) -> Counter[Key | None]:
    """(phase, stage) counts of one thread's time-ordered samples; None: the bench's own polling;
    ("wait", "") for wake-up points. A transaction's BEGIN/COMMIT takes the phase of the last
    sample before it that was inside a transaction body (the COMMIT frame alone cannot say whose)."""
    out: Counter[Key | None] = Counter()
    last_tx_phase = AFTER
    for sample in samples:
        frames = [frames_table[i] for i in sample if frames_table[i].path]
        if not frames:
            continue
        if _waiting(frames[-1]):
            out[("wait", "")] += 1
            continue
        phase = phase_of(frames)
        if phase is None:
            out[None] += 1
            continue
        stage = stage_of(frames)
        in_store = any("gateway/store/" in f.path and "SqliteStore._" not in f.func for f in frames)
        if stage == "commit":
            phase = last_tx_phase
        elif in_store:
            last_tx_phase = phase
        out[(phase, stage)] += 1
    return out


def attribute(profile: dict[str, Any], times: dict[str, tuple[float, float]], rate: float = RATE,
              diagnostics: list[dict[str, Any]] | None = None) -> dict[Key, float]:
    """CPU seconds by (phase, stage) from py-spy's speedscope profile.

    A thread is sampled while on a CPU, while queued for one, and while blocked in the kernel
    on the disk (fsync). How many samples py-spy took per second of the first two is the same
    for every thread; the lowest ratio over the threads (a thread that never blocks on the
    disk, the event loop's) estimates it. Then, per thread: samples at wake-up points are
    dropped for its queued time, COMMIT samples for what it has beyond (its fsync), and its CPU
    time is spread over the rest (the bench's polling gets its share, then is left out)."""
    frames_table = [Frame(str(f.get("name", "")), str(f.get("file") or ""), int(f.get("line") or 0))
                    for f in profile["shared"]["frames"]]
    threads: list[tuple[float, float, Counter[Key | None]]] = []
    for prof in profile["profiles"]:
        m = re.search(r"Thread (\d+)", str(prof.get("name", "")))
        if m is None or m.group(1) not in times:
            continue
        run, wait = times[m.group(1)]
        counts = thread_samples(frames_table, prof["samples"])
        if sum(counts.values()) and run > 0:
            threads.append((run, wait, counts))
    if not threads:
        return {}
    # threads with a handful of samples (resolver, executor threads) would make a noisy estimate
    busy = [t for t in threads if sum(t[2].values()) >= 100] or threads
    per_s = min(sum(c.values()) / ((run + wait) * rate) for run, wait, c in busy) * rate
    out: Counter[Key] = Counter()
    for run, wait, counts in threads:
        total = sum(counts.values())
        queued = min(counts[("wait", "")], per_s * wait)
        counts[("wait", "")] -= queued
        blocked = max(0.0, total - per_s * (run + wait))
        commits = [k for k in counts if k is not None and k[1] == "commit"]
        in_commit = sum(counts[k] for k in commits)
        dropped = min(blocked, in_commit)
        for k in commits:
            share = dropped * counts[k] / in_commit
            counts[k] -= share
            out[(FSYNC, k[0])] += share / per_s  # seconds in COMMIT off the CPU: time, not CPU
        rest = total - queued - dropped
        if diagnostics is not None:
            diagnostics.append({"samples": total, "run_s": run, "queued_s": wait, "wake_up_samples_dropped": queued,
                                "commit_samples_dropped": dropped, "samples_per_s": per_s})
        for key, n in counts.items():
            if n <= 0:
                continue
            if key is not None and key[0] != "wait":
                out[key] += run * n / rest
            elif key is not None:
                out[(AFTER, LOOP_C)] += run * n / rest
    return dict(out)


def py_spy() -> str | None:
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


async def profiled(pid: int, out: Path, work: Callable[[], Awaitable[dict[str, Any]]]
                   ) -> tuple[dict[str, Any], dict[str, tuple[float, float]], str]:
    """`work()` with py-spy attached; (its result, each thread's run and queued seconds over it, py-spy's log)."""
    spy = py_spy()
    assert spy is not None
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "speedscope", "--threads",
        "--nonblocking", "--full-filenames", "--output", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    await asyncio.sleep(1.0)  # let it attach
    before = thread_times(pid)
    try:
        result = await work()
    finally:
        after = thread_times(pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        log = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    zero = (0.0, 0.0)
    return result, {t: (r - before.get(t, zero)[0], w - before.get(t, zero)[1]) for t, (r, w) in after.items()}, log


async def breakdown_run(bench: Bench, d: Daemon, case_name: str, deliveries: int, results: Path,
                        timeout: float) -> dict[str, Any]:
    """`EVENTS[case]` fan-outs under py-spy; CPU µs by stage per event and per delivery."""
    if py_spy() is None:
        return {"skipped": "py-spy not installed (pip install -e '.[bench]')"}
    assert d.proc is not None
    pid = d.proc.pid
    events = EVENTS.get(case_name, 3)
    out = results / f"breakdown-{case_name}-{stamp()}.speedscope.json"

    async def work() -> dict[str, Any]:
        walls, intakes, firsts = [], [], []
        cpu0 = cpu_seconds(pid)
        for i in range(events):
            await bench.rx("reset", fail_rate=0, seed=i)
            event_id = f"bench-breakdown-{case_name}-{i}-{bench.runs}"
            t0 = time.monotonic()
            await bench.post_event(d, event_id)
            t_202 = time.monotonic()
            waited = await bench.rx("wait", count=deliveries, timeout=timeout)
            if not waited["ok"]:
                raise RuntimeError(f"breakdown run: only {waited['delivered']}/{deliveries} arrived")
            await bench.recorded(d, event_id, deliveries, time.monotonic() + 30, every=0.02)
            s = await bench.rx("summary")
            walls.append((max(s["arrivals"]) - t0) * 1000)
            intakes.append((t_202 - t0) * 1000)
            firsts.append((min(s["arrivals"]) - t_202) * 1000)
        return {"cpu_s": cpu_seconds(pid) - cpu0, "wall_ms": walls, "intake_ms": intakes, "first_ms": firsts}

    measured, times, log = await profiled(pid, out, work)
    if not out.exists():
        return {"skipped": f"py-spy wrote nothing: {log[-300:]}"}
    threads: list[dict[str, Any]] = []
    by = attribute(json.loads(out.read_text()), times, diagnostics=threads)
    blocked = {phase: round(s / events * 1e6, 1) for (kind, phase), s in by.items() if kind == FSYNC}
    by = {k: v for k, v in by.items() if k[0] != FSYNC}
    stages = {f"{phase}:{stage}": round(s / events * 1e6, 1) for (phase, stage), s in sorted(by.items())}
    return {"events": events, "deliveries_per_event": deliveries, "file": str(out), "rate": RATE,
            "daemon_cpu_s": measured["cpu_s"], "attributed_cpu_s": sum(by.values()),
            "queued_for_a_core_s": sum(w for _, w in times.values()),
            "us_per_event": stages, "commit_blocked_us_per_event": blocked, "profiled_runs": measured,
            "threads": threads}


def breakdown_table(cases: dict[str, dict[str, Any]]) -> str:
    """Markdown: one row per stage, µs CPU per event (request path / after the 202) and per delivery."""
    found = {name: res["breakdown"] for name, res in cases.items()
             if isinstance(res.get("breakdown"), dict) and "us_per_event" in res["breakdown"]}
    if not found:
        return ""
    head = ["stage"]
    for name, b in found.items():
        n = b["deliveries_per_event"]
        head += [f"{name} ({n:,}): before the 202, µs/event", "after the 202, µs/event", "µs/delivery"]
    rows = []
    totals: dict[str, list[float]] = {name: [0.0, 0.0] for name in found}
    for stage in ORDER:
        row = [stage]
        seen = False
        for name, b in found.items():
            us = b["us_per_event"]
            req, aft = us.get(f"{REQUEST}:{stage}", 0.0), us.get(f"{AFTER}:{stage}", 0.0)
            seen = seen or bool(req or aft)
            totals[name][0] += req
            totals[name][1] += aft
            row += [fmt(req, 0) if req else "–", fmt(aft, 0) if aft else "–",
                    fmt((req + aft) / b["deliveries_per_event"], 1)]
        if seen:
            rows.append(row)
    total_row = ["**total** (daemon CPU)"]
    for name, b in found.items():
        req, aft = totals[name]
        total_row += [fmt(req, 0), fmt(aft, 0), fmt((req + aft) / b["deliveries_per_event"], 1)]
    rows.append(total_row)
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    notes = []
    for name, b in found.items():
        runs = b["profiled_runs"]
        med = sorted(runs["intake_ms"])[len(runs["intake_ms"]) // 2]
        first = sorted(runs["first_ms"])[len(runs["first_ms"]) // 2]
        wall = sorted(runs["wall_ms"])[len(runs["wall_ms"]) // 2]
        req = totals[name][0] / 1000
        fs = b.get("commit_blocked_us_per_event", {})
        notes.append(f"- {name}: {b['events']} events of {b['deliveries_per_event']:,} under py-spy ({b['rate']}/s);"
                     f" POST → 202 {fmt(med, 1)} ms (of which {fmt(req, 1)} ms daemon CPU on the request path),"
                     f" 202 → first arrival {fmt(first, 1)} ms, POST → last {fmt(wall, 1)} ms (medians, slowed by"
                     f" the profiler); CPU attributed {fmt(b['attributed_cpu_s'], 2)} of {fmt(b['daemon_cpu_s'], 2)} s;"
                     f" the SQLite thread blocked in COMMIT (fsync, off the CPU, not in the table)"
                     f" {fmt(fs.get(REQUEST), 0)} µs per event before the 202, {fmt(fs.get(AFTER), 0)} µs after")
    return "\n".join(lines) + "\n\n" + "\n".join(notes)
