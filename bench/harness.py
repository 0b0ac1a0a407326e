"""The harness: `Bench` starts the receiver and the bare loop once, then runs each case (its
daemons, the alternating gateway and bare runs, the timings and the CPU split) and returns the
case's record for the JSON report. `python -m bench.run` (bench/run.py) drives it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.breakdown import BREAKDOWN_EXTRA_S, breakdown_run
from bench.cases import CONCURRENCY, Case, percentile, run_stats, summarise
from bench.children import Bare, BenchError, Child, start_receiver
from bench.cluster import (
    NoPostgres,
    PgWatch,
    all_processes_cpu,
    cpu_by_command,
    delivered_count,
    machine_busy,
    throwaway_database,
)
from bench.procstat import cpu_seconds, memory
from bench.profiling import log_digest, record_profile
from bench.queued import QUEUED
from channels.signing import generate_secret
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, Daemon, free_port

WRITER = TOKENS["writer"][0]
READER = TOKENS["reader"][0]


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
    async def rx(self, op: str, *, post: bool = False, base: str | None = None, **params: Any) -> dict[str, Any]:
        """Call a control route of the receiver (another one at `base`); `timeout` (wait) also
        bounds the HTTP call."""
        method = "POST" if post or op == "reset" else "GET"
        limit = float(params.get("timeout", 25)) + 5
        async with self.http.request(method, f"{base or self.receiver_url}/_bench/{op}",
                                     params={k: str(v) for k, v in params.items()},
                                     timeout=aiohttp.ClientTimeout(total=limit)) as r:
            r.raise_for_status()
            body: dict[str, Any] = await r.json()
            return body

    # ---- daemon
    def daemon_for(self, case: Case, store_url: str | None = None, index: int = 0) -> Daemon:
        # a port just bound and released: nothing listens there, every connection is refused
        base = f"http://127.0.0.1:{free_port()}" if case.unreachable else self.receiver_url
        urls = [{"url": f"{base}/hook/{{unit_id}}/{i}"} for i in range(case.endpoints)]
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

    async def post_event(self, d: Daemon, event_id: str, level: str = "orange", **extra: Any) -> dict[str, Any]:
        """POST a `warning.issued` (plus any other event fields in `extra`); the 202 answer."""
        event = {"type": "warning.issued", "level": level, "id": event_id, **extra}
        async with self.http.post(f"{d.url}/v1/events", headers={"Authorization": f"Bearer {WRITER}"},
                                  json=event) as r:
            body: dict[str, Any] = await r.json()
            if r.status != 202:
                raise BenchError(f"POST /v1/events answered {r.status}: {body}")
            return body

    async def recorded(self, d: Daemon, event_id: str, expected: int, deadline: float,
                       every: float = 0.01) -> float:
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
            await asyncio.sleep(every)

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
                                  "store": case.store, "instances": case.instances, "kind": case.kind,
                                  "unreachable": case.unreachable,
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
        return summarise(result)

    async def _run_case(self, case: Case, repeats: int, result: dict[str, Any], store_url: str | None,
                        watch: PgWatch | None) -> dict[str, Any]:
        daemons = [self.daemon_for(case, store_url, i) for i in range(case.instances)]
        result["loadavg_at_start"] = os.getloadavg()
        started = time.monotonic()
        # the breakdown's profiled runs come on top of the measured ones
        limit = case.timeout + (BREAKDOWN_EXTRA_S if case.name in self.args.breakdown else 0)
        try:
            async with asyncio.timeout(limit):
                # started together: on an empty database they race to migrate; an advisory lock settles it
                await asyncio.gather(*(x.start() for x in daemons))
                result["daemon_rss_idle_mb"] = max(memory(pid).rss_mb for pid in _pids(daemons))

                def left() -> float:
                    return max(1.0, limit - (time.monotonic() - started))

                loaded = False
                if case.kind != "fanout":
                    # the queue cases (bench.queued): one daemon, no bare side, their own steps
                    await QUEUED[case.kind](self, daemons[0], case, repeats, result, left)
                elif case.warmup:
                    # not counted: connection pools, SQLite pages, and the bodies for the bare loop
                    warm = await self.gateway_run(daemons, case, seed=10_000, timeout=left(), watch=watch)
                    result["warmup_gateway"] = {k: warm[k] for k in ("wall_ms", "rate", "delivered")}
                    result["body_bytes"] = await self.load_bare(case)
                    loaded = True
                    await self.bare_run(case.name, case, seed=10_001, timeout=left())
                for r in range(repeats if case.kind == "fanout" else 0):
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
                if case.name in self.args.breakdown and case.kind == "fanout" and case.instances == 1:
                    result["breakdown"] = await breakdown_run(self, daemons[0], case.name, case.deliveries,
                                                              self.args.results, left())
                if self.args.profile and case.name in self.args.profile_cases:
                    result["profile"] = await self.profile_run(daemons, case, left(), watch)
        except TimeoutError:
            result["error"] = f"hard timeout: case exceeded {limit:g}s"
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
        return summarise(result)

    async def profile_run(self, daemons: list[Daemon], case: Case, timeout: float,
                          watch: PgWatch | None = None) -> dict[str, Any]:
        """One more gateway run with py-spy attached to the first daemon (not counted in the figures)."""
        d = daemons[0]
        assert d.proc is not None
        return await record_profile(
            d.proc.pid, case.name, self.args.results, self.args.profile_gil,
            lambda: self.gateway_run(daemons, case, seed=20_000, timeout=timeout, watch=watch))


def _pids(daemons: list[Daemon]) -> list[int]:
    return [x.proc.pid for x in daemons if x.proc is not None]
