"""Looking inside the daemons beyond the figures: a py-spy profile of one extra gateway run
(`--profile`, `--profile-gil`) with its hottest frames, and the digest of the daemons' logs."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.cases import ROOT
from bench.report import stamp
from tests.support.daemon import Daemon


async def record_profile(pid: int, name: str, results: Path, gil: bool,
                         run: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """`run()` (one gateway run) with py-spy attached to `pid`; the collapsed stacks go to `results`."""
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        return {"skipped": "py-spy not installed (pip install py-spy into .venv)"}
    mode = "gil" if gil else "all"
    out = results / f"profile-{name}-{mode}-{stamp()}.txt"
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--threads",
        "--nonblocking", *(["--gil"] if gil else []), "--output", str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    await asyncio.sleep(1.0)  # let it attach
    try:
        measured = await run()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        log = await asyncio.wait_for(proc.communicate(), 30)
    if not out.exists():
        return {"skipped": f"py-spy wrote nothing: {log[0].decode(errors='replace')[-500:]}"}
    return {"file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out), "mode": mode,
            "run": {k: measured[k] for k in ("wall_ms", "rate", "cpu_per_1000")}, **summarise_profile(out)}


def summarise_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Top frames by self samples and by inclusive samples from py-spy's collapsed-stack output."""
    self_n: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        total += count
        if frames and frames[0].startswith("thread ("):
            threads[frames[0]] += count
            frames = frames[1:]
        if not frames:
            continue
        self_n[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    return {
        "samples": total,
        "threads": dict(threads.most_common()),
        "top_self": [(f, n, round(100 * n / total, 1)) for f, n in self_n.most_common(top)] if total else [],
        "top_inclusive": [(f, n, round(100 * n / total, 1)) for f, n in incl.most_common(top * 2)] if total else [],
    }


def log_digest(daemons: list[Daemon]) -> dict[str, Any]:
    """Warnings and errors the daemons logged during the case, by event name (all instances)."""
    levels: Counter[str] = Counter()
    notable: Counter[str] = Counter()
    for d in daemons:
        for e in d.log_events():
            level = str(e.get("level", ""))
            levels[level] += 1
            if level in ("warning", "error", "critical", "exception"):
                notable[f"{level}:{e.get('event')}"] += 1
    return {"lines_by_level": dict(levels), "warnings_and_errors": dict(notable.most_common(20))}
