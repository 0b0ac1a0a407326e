"""Benchmark: the real gateway daemon vs a bare aiohttp loop, side by side in one run.

    python -m bench.run [--quick] [--cases latency tp2k ...] [--out bench/results/latest.json]

Three processes besides this one, all on 127.0.0.1: the webhook receiver (`bench.receiver`),
the gateway daemon (`python -m gateway run`, one per case, fresh SQLite file, durable
`synchronous=FULL`) and the bare loop (`bench.bare`). Gateway and bare runs alternate
(G,B then B,G ...); every figure is the median over the repeats. See bench/README.md.

The `pg1`/`pg2`/`pg3` cases run 1, 2 or 3 daemons on one fresh PostgreSQL database (created
and dropped by `bench.cluster`), the event POSTed to the first; CPU is summed over all daemons,
and the run's CPU is split into daemons / PostgreSQL / receiver / harness / rest of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import yaml

from bench.cluster import (
    ADMIN_URL,
    NoPostgres,
    PgWatch,
    all_processes_cpu,
    cpu_by_command,
    delivered_count,
    machine_busy,
    server_info,
    throwaway_database,
)
from bench.procstat import cpu_seconds, machine, memory
from channels.signing import generate_secret
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, Daemon

ROOT = Path(__file__).resolve().parent.parent
UNITS = 40
CONCURRENCY = 50
WRITER = TOKENS["writer"][0]
READER = TOKENS["reader"][0]


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
)}
# `make bench` / no --cases: everything but the 2,000-delivery PostgreSQL variants
DEFAULT_CASES = [name for name in CASES if not name.endswith("_2k")]
OPTIONAL = ("apprise", "alertmanager")


class BenchError(RuntimeError):
    pass


# ---------------------------------------------------------------- small helpers
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


def fmt(v: float | None, digits: int = 1) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000 and digits <= 1:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ---------------------------------------------------------------- processes
class Child:
    """A helper process started by the harness, stopped by its own pid only."""

    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc = proc
        self.name = name

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def start_receiver(env: dict[str, str]) -> tuple[Child, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.receiver", "--port", "0",
        stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    if not line.startswith(b"READY "):
        raise BenchError(f"receiver did not start: {line!r}")
    return Child(proc, "receiver"), int(line.split()[1])


class Bare:
    """The bare-loop process, driven by JSON lines."""

    def __init__(self, child: Child) -> None:
        self.child = child

    @classmethod
    async def start(cls, env: dict[str, str]) -> Bare:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bare", "--concurrency", str(CONCURRENCY),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
            limit=64 * 1024 * 1024)
        return cls(Child(proc, "bare"))

    async def call(self, cmd: dict[str, Any], timeout: float) -> dict[str, Any]:
        proc = self.child.proc
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await proc.stdin.drain()
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
        if not line:
            raise BenchError("bare loop process exited")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise BenchError(f"bare loop: {answer.get('error')}")
        return answer


# ---------------------------------------------------------------- the bench
class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.secret = generate_secret()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "GATEWAY_WEBHOOK_SECRET": self.secret}
        self.session: aiohttp.ClientSession | None = None
        self.receiver: Child | None = None
        self.receiver_url = ""
        self.bare: Bare | None = None
        self.runs = 0

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self.session is not None
        return self.session

    async def __aenter__(self) -> Bench:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8), timeout=aiohttp.ClientTimeout(total=None))
        self.receiver, port = await start_receiver(self.env)
        self.receiver_url = f"http://127.0.0.1:{port}"
        self.bare = await Bare.start(self.env)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.bare is not None:
            with contextlib.suppress(Exception):
                await self.bare.call({"op": "quit"}, 2)
            await self.bare.child.stop()
        if self.receiver is not None:
            await self.receiver.stop()
        if self.session is not None:
            await self.session.close()

    # ---- receiver control
    async def rx(self, op: str, **params: Any) -> dict[str, Any]:
        """Call a control route of the receiver; `timeout` (wait) also bounds the HTTP call."""
        method = "POST" if op == "reset" else "GET"
        limit = float(params.get("timeout", 25)) + 5
        async with self.http.request(method, f"{self.receiver_url}/_bench/{op}",
                                     params={k: str(v) for k, v in params.items()},
                                     timeout=aiohttp.ClientTimeout(total=limit)) as r:
            r.raise_for_status()
            body: dict[str, Any] = await r.json()
            return body

    # ---- daemon
    def daemon_for(self, case: Case, store_url: str | None = None, index: int = 0) -> Daemon:
        urls = [{"url": f"{self.receiver_url}/hook/{{unit_id}}/{i}"} for i in range(case.endpoints)]
        config: dict[str, Any] = {
            "log_format": "json",
            **({"store": {"url": store_url}} if store_url else {}),
            "roster": {"extra_contacts": {"*": urls}},
            "channels": {"webhook": {"enabled": True, "per_endpoint": CONCURRENCY},
                         "twilio": {"enabled": False}},
            "dispatch": {"concurrency": CONCURRENCY, **case.dispatch},
            "sandbox": {"enabled": False},
        }
        for dotted, value in self.args.set:
            *path, last = dotted.split(".")
            node: dict[str, Any] = config
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        root = self.workdir / case.name if case.instances == 1 else self.workdir / case.name / f"gw{index}"
        return Daemon(root, config, ALL_ROLES_POLICY, env={"GATEWAY_WEBHOOK_SECRET": self.secret})

    async def delivered_counts(self, daemons: list[Daemon]) -> list[float]:
        """Each daemon's gateway_deliveries_total{channel="webhook", outcome="delivered"}."""
        async def one(d: Daemon) -> float:
            async with self.http.get(f"{d.url}/metrics") as r:
                return delivered_count(await r.text())
        return list(await asyncio.gather(*(one(d) for d in daemons)))

    async def post_event(self, d: Daemon, event_id: str) -> dict[str, Any]:
        async with self.http.post(f"{d.url}/v1/events", headers={"Authorization": f"Bearer {WRITER}"},
                                  json={"type": "warning.issued", "level": "orange", "id": event_id}) as r:
            body: dict[str, Any] = await r.json()
            if r.status != 202:
                raise BenchError(f"POST /v1/events answered {r.status}: {body}")
            return body

    async def recorded(self, d: Daemon, event_id: str, expected: int, deadline: float) -> float:
        """Poll the event list (summary counts only) until every delivery is `delivered` in the store."""
        while True:
            async with self.http.get(f"{d.url}/v1/events", params={"limit": "1"},
                                     headers={"Authorization": f"Bearer {READER}"}) as r:
                events = (await r.json())["events"]
            if events and events[0]["id"] == event_id:
                by_status = events[0]["summary"]["by_status"]
                if by_status.get("delivered", 0) >= expected:
                    return time.monotonic()
            if time.monotonic() > deadline:
                raise BenchError(f"event {event_id} not recorded as delivered in time: {events[:1]}")
            await asyncio.sleep(0.01)

    # ---- one run each
    async def gateway_run(self, daemons: list[Daemon], case: Case, seed: int, timeout: float,
                          watch: PgWatch | None = None) -> dict[str, Any]:
        """One fan-out POSTed to the first daemon; CPU summed over every daemon (and split by process)."""
        d = daemons[0]
        pids = [x.proc.pid for x in daemons if x.proc is not None]
        assert len(pids) == len(daemons) and self.receiver is not None
        self.runs += 1
        event_id = f"bench-{case.name}-{self.runs}"
        await self.rx("reset", fail_rate=case.fail_rate, seed=seed)
        counts0 = await self.delivered_counts(daemons)
        pg0 = await watch.cpu_snapshot() if watch is not None else {}
        if watch is not None:
            watch.start_sampling()
        procs0 = all_processes_cpu()
        cpu0 = [cpu_seconds(pid) for pid in pids]
        rx0, harness0, (busy0, irq0) = cpu_seconds(self.receiver.pid), time.process_time(), machine_busy()
        t0 = time.monotonic()
        answer = await self.post_event(d, event_id)
        t_202 = time.monotonic()
        if answer["deliveries"] != case.deliveries:
            raise BenchError(f"expected {case.deliveries} deliveries, the gateway planned {answer['deliveries']}")
        waited = await self.rx("wait", count=case.deliveries, timeout=timeout)
        if not waited["ok"]:
            raise BenchError(f"gateway: only {waited['delivered']}/{case.deliveries} arrived within {timeout:g}s")
        t_rec = await self.recorded(d, event_id, case.deliveries, time.monotonic() + 30)
        cpus = [cpu_seconds(pid) - c for pid, c in zip(pids, cpu0, strict=True)]
        rx_cpu, harness_cpu = cpu_seconds(self.receiver.pid) - rx0, time.process_time() - harness0
        busy, irq = (b - a for a, b in zip((busy0, irq0), machine_busy(), strict=True))
        procs1 = all_processes_cpu()
        window = time.monotonic() - t0
        activity = await watch.stop_sampling() if watch is not None else None
        pg_cpu = await watch.cpu_since(pg0) if watch is not None else 0.0
        known = {*pids, self.receiver.pid, os.getpid(), *(await watch.pids() if watch is not None else ())}
        # everything else that ran meanwhile (other test suites, other databases' backends, ...)
        others = cpu_by_command(procs0, procs1, known)
        counts = [b - a for a, b in zip(counts0, await self.delivered_counts(daemons), strict=True)]
        s = await self.rx("summary")
        cpu = sum(cpus)
        per_1000 = 1000 / case.deliveries
        out = run_stats(s["arrivals"], t0, case.deliveries)
        out.update(
            intake_ms=(t_202 - t0) * 1000,
            recorded_ms=(t_rec - t0) * 1000,
            from_202_p50_ms=percentile([(a - t_202) * 1000 for a in s["arrivals"]], 50),
            from_202_first_ms=(min(s["arrivals"]) - t_202) * 1000 if s["arrivals"] else None,
            cpu_s=cpu, cpu_per_1000=cpu * per_1000,
            # where the machine's CPU went over POST -> all recorded (seconds per 1,000 deliveries)
            pg_cpu_per_1000=pg_cpu * per_1000, receiver_cpu_per_1000=rx_cpu * per_1000,
            harness_cpu_per_1000=harness_cpu * per_1000, machine_cpu_per_1000=busy * per_1000,
            irq_cpu_per_1000=irq * per_1000,
            other_cpu_per_1000=max(0.0, busy - cpu - pg_cpu - rx_cpu - harness_cpu - irq) * per_1000,
            machine_busy_pct=100 * busy / (window * (os.cpu_count() or 1)),
            metric_delivered=sum(counts),
            other_top=[(comm, round(c * per_1000, 3)) for comm, c in others[:4]],
            received=s["received"], dup_2xx=s["dup_2xx"], bad_signatures=s["bad_signatures"],
            statuses=s["statuses"], event_id=event_id,
        )
        if len(daemons) > 1:
            total = sum(counts) or 1.0
            for i, (c, n) in enumerate(zip(cpus, counts, strict=True)):
                out[f"cpu_s_{i}"] = c
                out[f"share_pct_{i}"] = 100 * n / total
        if activity is not None:
            out.update({f"pg_{k}": v for k, v in activity.items() if k.startswith("mean_")},
                       pg_top_waits=activity["top_waits"], pg_top_statements=activity["top_statements"],
                       pg_activity_samples=activity["samples"])
        return out

    async def bare_run(self, name: str, case: Case, seed: int, timeout: float) -> dict[str, Any]:
        assert self.bare is not None
        self.runs += 1
        await self.rx("reset", fail_rate=case.fail_rate, seed=seed)
        cpu0 = cpu_seconds(self.bare.child.pid)
        res = await self.bare.call({"op": "run", "name": name, "prefix": f"bare-{self.runs}-",
                                    "timeout": timeout}, timeout + 5)
        cpu = cpu_seconds(self.bare.child.pid) - cpu0
        s = await self.rx("summary")
        out = run_stats(s["arrivals"], res["t0"], case.deliveries)
        out.update(cpu_s=cpu, cpu_per_1000=cpu / case.deliveries * 1000, received=s["received"],
                   dup_2xx=s["dup_2xx"], bad_signatures=s["bad_signatures"], statuses=s["statuses"],
                   loop_ms=(res["t_end"] - res["t0"]) * 1000)
        return out

    async def load_bare(self, case: Case) -> list[int]:
        """Hand the bare loop exactly the (path, body) pairs the gateway just delivered; body sizes."""
        bodies = await self.rx("bodies")
        targets = [[p, i] for p, i in bodies["paths"].items()]
        if len(targets) != case.deliveries:
            raise BenchError(f"receiver saw {len(targets)} paths, expected {case.deliveries}")
        assert self.bare is not None
        await self.bare.call({"op": "load", "name": case.name, "base": self.receiver_url,
                              "bodies": bodies["bodies"], "targets": targets}, 30)
        return sorted({len(b.encode()) for b in bodies["bodies"]})

    # ---- one case
    async def run_case(self, case: Case, repeats: int) -> dict[str, Any]:
        result: dict[str, Any] = {"title": case.title, "deliveries": case.deliveries, "repeats": repeats,
                                  "fail_rate": case.fail_rate, "dispatch": case.dispatch,
                                  "store": case.store, "instances": case.instances,
                                  "gateway_runs": [], "bare_runs": []}
        if case.store != "postgres":
            return await self._run_case(case, repeats, result, None, None)
        try:
            # the database is dropped after the daemons have stopped (they stop in _run_case)
            async with throwaway_database() as url, PgWatch(url) as watch:
                result["database"] = url.rsplit("/", 1)[1]
                return await self._run_case(case, repeats, result, url, watch)
        except NoPostgres as exc:
            result["skipped"] = str(exc)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            result["error"] = f"PostgreSQL: {type(exc).__name__}: {exc}"
        return self._summarise(result)

    async def _run_case(self, case: Case, repeats: int, result: dict[str, Any], store_url: str | None,
                        watch: PgWatch | None) -> dict[str, Any]:
        daemons = [self.daemon_for(case, store_url, i) for i in range(case.instances)]
        result["loadavg_at_start"] = os.getloadavg()
        started = time.monotonic()
        try:
            async with asyncio.timeout(case.timeout):
                # started together: on an empty database they race to migrate; an advisory lock settles it
                await asyncio.gather(*(x.start() for x in daemons))
                result["daemon_rss_idle_mb"] = max(memory(pid).rss_mb for pid in _pids(daemons))

                def left() -> float:
                    return max(1.0, case.timeout - (time.monotonic() - started))

                loaded = False
                if case.warmup:
                    # not counted: connection pools, SQLite pages, and the bodies for the bare loop
                    warm = await self.gateway_run(daemons, case, seed=10_000, timeout=left(), watch=watch)
                    result["warmup_gateway"] = {k: warm[k] for k in ("wall_ms", "rate", "delivered")}
                    result["body_bytes"] = await self.load_bare(case)
                    loaded = True
                    await self.bare_run(case.name, case, seed=10_001, timeout=left())
                for r in range(repeats):
                    # the first run of a case without warm-up is the gateway's: it yields the bodies
                    order = ("gateway", "bare") if r % 2 == 0 else ("bare", "gateway")
                    for who in order:
                        if who == "gateway":
                            result["gateway_runs"].append(
                                await self.gateway_run(daemons, case, seed=r, timeout=left(), watch=watch))
                            if not loaded:
                                result["body_bytes"] = await self.load_bare(case)
                                loaded = True
                        else:
                            result["bare_runs"].append(await self.bare_run(case.name, case, seed=r, timeout=left()))
                mems = [memory(pid) for pid in _pids(daemons)]
                result["daemons_peak_rss_mb"] = [m.peak_rss_mb for m in mems]
                result["daemon_peak_rss_mb"] = max(m.peak_rss_mb for m in mems)
                result["daemon_rss_mb"] = max(m.rss_mb for m in mems)
                if self.args.profile and case.name in self.args.profile_cases:
                    result["profile"] = await self.profile_run(daemons, case, left(), watch)
        except TimeoutError:
            result["error"] = f"hard timeout: case exceeded {case.timeout:g}s"
        except (BenchError, OSError, RuntimeError, aiohttp.ClientError) as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            live = [x for x in daemons if x.proc is not None and x.proc.poll() is None]
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                peaks = [memory(pid).peak_rss_mb for pid in _pids(live)]
                result.setdefault("daemons_peak_rss_mb", peaks)
                result.setdefault("daemon_peak_rss_mb", max(peaks, default=None))
            for x in daemons:
                try:
                    await x.stop(timeout=15)
                except TimeoutError:
                    result.setdefault("problems", []).append(
                        f"daemon {x.root.name} did not stop on SIGTERM within 15 s (killed)")
            exited = [f"{x.root.name}: exit {x.proc.returncode}" for x in daemons
                      if x.proc is not None and x.proc.returncode not in (0, -signal.SIGTERM)]
            if exited:
                result.setdefault("problems", []).append(f"daemon exit status {exited}")
            result["daemon_log"] = log_digest(daemons)
            if "error" in result:
                result["daemon_log_tail"] = "\n".join(x.tail(20) for x in daemons)
        if self.bare is not None:
            result["bare_peak_rss_mb"] = memory(self.bare.child.pid).peak_rss_mb
        result["seconds"] = round(time.monotonic() - started, 1)
        return self._summarise(result)

    @staticmethod
    def _summarise(result: dict[str, Any]) -> dict[str, Any]:
        for side in ("gateway", "bare"):
            runs = result[f"{side}_runs"]
            keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, int | float)})
            result[side] = {k: median_of(runs, k) for k in keys}
            result[side]["runs"] = len(runs)
            result[side]["all_delivered_runs"] = sum(1 for r in runs if r["delivered"] == r["expected"])
            result[side]["dup_2xx_total"] = sum(r.get("dup_2xx", 0) for r in runs)
        return result

    async def profile_run(self, daemons: list[Daemon], case: Case, timeout: float,
                          watch: PgWatch | None = None) -> dict[str, Any]:
        """One more gateway run with py-spy attached to the first daemon (not counted in the figures)."""
        d = daemons[0]
        assert d.proc is not None
        spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if spy is None:
            return {"skipped": "py-spy not installed (pip install py-spy into .venv)"}
        mode = "gil" if self.args.profile_gil else "all"
        out = self.args.results / f"profile-{case.name}-{mode}-{stamp()}.txt"
        proc = await asyncio.create_subprocess_exec(
            spy, "record", "--pid", str(d.proc.pid), "--rate", "250", "--format", "raw", "--threads",
            "--nonblocking", *(["--gil"] if self.args.profile_gil else []), "--output", str(out),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT)
        await asyncio.sleep(1.0)  # let it attach
        try:
            run = await self.gateway_run(daemons, case, seed=20_000, timeout=timeout, watch=watch)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            log = await asyncio.wait_for(proc.communicate(), 30)
        if not out.exists():
            return {"skipped": f"py-spy wrote nothing: {log[0].decode(errors='replace')[-500:]}"}
        return {"file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out), "mode": mode,
                "run": {k: run[k] for k in ("wall_ms", "rate", "cpu_per_1000")}, **summarise_profile(out)}


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


def _pids(daemons: list[Daemon]) -> list[int]:
    return [x.proc.pid for x in daemons if x.proc is not None]


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


def optional_comparisons() -> dict[str, str]:
    notes = {}
    if importlib.util.find_spec("apprise") is None:
        notes["apprise"] = "skipped: apprise is not installed (never a runtime dependency)"
    else:
        notes["apprise"] = "skipped: apprise is installed but this harness has no Apprise driver yet"
    if shutil.which("alertmanager") is None:
        notes["alertmanager"] = "skipped: no alertmanager binary on PATH"
    else:
        notes["alertmanager"] = "skipped: alertmanager is on PATH but this harness has no driver yet"
    return notes


# ---------------------------------------------------------------- report
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


def table(report: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str, str, str]] = []

    def add(case: str, metric: str, g: float | None, b: float | None, r: float | None = None,
            target: str = "", digits: int = 1) -> None:
        rows.append((case, metric, fmt(g, digits), fmt(b, digits), fmt(r, 2) if r is not None else "", target))

    for name, res in report["cases"].items():
        g, b = res.get("gateway", {}), res.get("bare", {})
        title = f"{res['title']} (n={res['gateway'].get('runs', 0)}/{res['bare'].get('runs', 0)})"
        if "error" in res:
            rows.append((title, "ERROR", res["error"][:80], "", "", ""))
        if "skipped" in res:
            rows.append((title, "skipped", res["skipped"][:80], "", "", ""))
            continue
        if name == "latency":
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
    for name, note in report.get("optional", {}).items():
        rows.append((name, note, "", "", "", ""))
    head = ("case", "metric", "gateway", "bare loop", "gateway/bare", "target")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


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
              f" {report['loadavg_at_end'][0]:.2f}: other work on the machine skews absolute figures")


def problems(report: dict[str, Any]) -> Iterator[str]:
    for name, res in report["cases"].items():
        if "error" in res:
            yield f"{name}: {res['error']}"
        for p in res.get("problems", []):
            yield f"{name}: {p}"
        notable = dict(res.get("daemon_log", {}).get("warnings_and_errors", {}))
        if res.get("fail_rate"):
            notable.pop("warning:delivery_attempt_failed", None)  # the injected 503s: expected
        if notable:
            yield f"{name}: daemon logged {notable}"
        dups = res.get("gateway", {}).get("dup_2xx_total", 0)
        if dups:
            yield f"{name}: {dups} duplicate deliveries at the receiver (no daemon crashed: should be 0)"
        for side in ("gateway", "bare"):
            bad = sum(r.get("bad_signatures", 0) for r in res.get(f"{side}_runs", []))
            if bad:
                yield f"{name}: {bad} {side} requests failed signature verification"


# ---------------------------------------------------------------- main
async def amain(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    report = environment(argv)
    report["loadavg_at_start"] = os.getloadavg()
    # SIGTERM (e.g. from `timeout`) cancels the run: daemons stopped, throwaway databases dropped
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    note_overrides(report, args)
    report["cases"] = {}
    report["optional"] = optional_comparisons()
    if any(CASES[name].store == "postgres" for name in args.cases):
        report["postgresql"] = {"admin_url": ADMIN_URL, **await server_info()}
    workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
    try:
        async with Bench(args, workdir) as bench:
            for name in args.cases:
                case = CASES[name]
                repeats = args.repeats or case.repeats[1 if args.quick else 0]
                print(f"· {case.title}: {repeats} gateway + {repeats} bare runs ...", file=sys.stderr, flush=True)
                report["cases"][name] = res = await bench.run_case(case, repeats)
                g, b = res["gateway"], res["bare"]
                print(f"  {res['seconds']}s; gateway wall {fmt(g.get('wall_ms'))} ms, {fmt(g.get('rate'))}/s;"
                      f" bare wall {fmt(b.get('wall_ms'))} ms, {fmt(b.get('rate'))}/s"
                      + (f"; ERROR {res['error']}" if "error" in res else ""), file=sys.stderr, flush=True)
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return report


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
    parser.add_argument("--cases", nargs="+", choices=[*CASES, *OPTIONAL], default=DEFAULT_CASES,
                        help="cases to run (default: all but the pg*_2k variants)")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeats of every case")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--profile", action="store_true",
                        help="after the measured runs, one extra gateway run under py-spy (tp20k by default)")
    parser.add_argument("--profile-gil", action="store_true",
                        help="sample only the thread holding the GIL (Python CPU), not every busy thread")
    parser.add_argument("--profile-cases", nargs="+", default=["tp20k"], choices=list(CASES))
    parser.add_argument("--set", type=config_override, action="append", default=[], metavar="KEY=VALUE",
                        help="override a daemon config key for every case, e.g. store.synchronous=NORMAL"
                             " (for experiments; the reference figures use the defaults)")
    parser.add_argument("--keep", action="store_true", help="keep the daemons' data dirs and logs")
    args = parser.parse_args(argv)
    args.cases = [c for c in args.cases if c in CASES]
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
