"""Optional comparisons (issue 9 item 1): Prometheus Alertmanager and Apprise against the same
kind of local receiver, measured only where installed and never a dependency of the gateway.

- Alertmanager (`alertmanager` or Debian's `prometheus-alertmanager` on PATH): one process per
  run of the bench, its own config (every alert its own group: `group_by: ['...']`,
  `group_wait: 0s`; one webhook receiver), clustering off, 127.0.0.1 only. 40 alerts in one
  `POST /api/v2/alerts` -> the last webhook's arrival; 2,000 alerts the same way (throughput);
  40 alerts with 20 % of the webhooks answered 503 (its own retries). Its CPU (utime + stime
  from /proc, POST -> last arrival) per 1,000 deliveries, as the gateway's is measured.
- Apprise (the `apprise` package importable): one `Apprise` object with 40 (2,000) `json://`
  URLs, `notify()` in a thread -> the last arrival. No retries, so no 503 case.

Both post to a second receiver process without signature checking (neither signs), keyed on
path and body instead of webhook-id (bench.receiver). Times: the harness's `time.monotonic()`
against the receiver's arrivals, as for the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import yaml

from bench.cases import median_of, run_stats
from bench.children import BenchError, Child, start_receiver
from bench.procstat import cpu_seconds
from tests.support.daemon import free_port

if TYPE_CHECKING:
    from bench.harness import Bench

ALERTMANAGER_BINARIES = ("alertmanager", "prometheus-alertmanager")
LATENCY_N, THROUGHPUT_N, FAIL_RATE = 40, 2000, 0.2
Once = Callable[[int, str, float, int], Awaitable[dict[str, Any]]]


def find_alertmanager() -> str | None:
    return next((p for p in map(shutil.which, ALERTMANAGER_BINARIES) if p), None)


def notes() -> dict[str, dict[str, Any]]:
    """What would be measured, or why not (the run replaces a note by its figures)."""
    out: dict[str, dict[str, Any]] = {}
    out["apprise"] = ({"note": "skipped: apprise is not installed (never a runtime dependency)"}
                      if importlib.util.find_spec("apprise") is None else {"note": "installed, not run"})
    out["alertmanager"] = ({"note": "skipped: no alertmanager binary on PATH (Debian: prometheus-alertmanager)"}
                           if find_alertmanager() is None else {"note": "installed, not run"})
    return out


async def run_comparisons(bench: Bench, tools: list[str], workdir: Path, quick: bool) -> dict[str, dict[str, Any]]:
    out = notes()
    wanted = [t for t in tools if out[t]["note"] == "installed, not run"]
    if not wanted:
        return out
    # a receiver without signature checking: neither tool signs its requests
    env = {k: v for k, v in bench.env.items() if k != "GATEWAY_WEBHOOK_SECRET"}
    receiver, port = await start_receiver(env)
    try:
        for tool in wanted:
            started = time.monotonic()
            try:
                async with asyncio.timeout(240):
                    if tool == "alertmanager":
                        out[tool] = await alertmanager(bench, port, workdir, quick)
                    else:
                        out[tool] = await apprise(bench, port, quick)
            except (TimeoutError, BenchError, OSError, aiohttp.ClientError) as exc:
                out[tool] = {"note": f"error: {type(exc).__name__}: {exc}"}
            out[tool]["seconds"] = round(time.monotonic() - started, 1)
    finally:
        await receiver.stop()
    return out


async def measure(bench: Bench, rx: str, once: Once, quick: bool, fail: bool) -> dict[str, Any]:
    """Warm-up, then the 40-item latency runs, the 2,000-item runs and (`fail`) the 503 runs."""
    await once(LATENCY_N, "warm", 0.0, 0)
    plan = [("latency", LATENCY_N, 0.0, 5 if quick else 10), ("tp2k", THROUGHPUT_N, 0.0, 1 if quick else 3)]
    if fail:
        plan.append(("fail503", LATENCY_N, FAIL_RATE, 3 if quick else 5))
    res: dict[str, Any] = {}
    for name, n, rate, repeats in plan:
        runs = [await once(n, f"{name}-{r}", rate, r) for r in range(repeats)]
        keys = sorted({k for x in runs for k, v in x.items() if isinstance(v, int | float)})
        res[name] = {"runs": runs, "n": len(runs), **{k: median_of(runs, k) for k in keys},
                     "all_delivered_runs": sum(1 for x in runs if x["delivered"] == n),
                     "dup_2xx_total": sum(x["dup_2xx"] for x in runs)}
    return res


async def settle(bench: Bench, rx: str, n: int, t0: float, t_sent: float, fail_rate: float) -> dict[str, Any]:
    """Wait for n distinct deliveries (at most 60 s with failures, 30 s without), then the run's figures."""
    waited = await bench.rx("wait", base=rx, count=n, timeout=60 if fail_rate else 30)
    s = await bench.rx("summary", base=rx)
    out = run_stats(s["arrivals"], t0, n)
    out.update(sent_ms=(t_sent - t0) * 1000, received=s["received"], dup_2xx=s["dup_2xx"],
               statuses=s["statuses"], complete=waited["ok"])
    return out


# ---------------------------------------------------------------- Alertmanager
def alertmanager_config(receiver: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "bench", "group_by": ["..."], "group_wait": "0s",
                  # retries of a failed webhook run until max(group_interval, 10 s) has passed
                  "group_interval": "1m", "repeat_interval": "4h"},
        "receivers": [{"name": "bench", "webhook_configs": [{"url": receiver, "send_resolved": False}]}],
    }


async def alertmanager(bench: Bench, rx_port: int, workdir: Path, quick: bool) -> dict[str, Any]:
    binary = find_alertmanager()
    assert binary is not None
    rx = f"http://127.0.0.1:{rx_port}"
    ver = await asyncio.create_subprocess_exec(binary, "--version", stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.STDOUT)
    version = (await asyncio.wait_for(ver.communicate(), 10))[0].decode(errors="replace").splitlines()
    root = workdir / "alertmanager"
    root.mkdir(parents=True, exist_ok=True)
    (root / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(f"{rx}/hook/am")))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (root / "alertmanager.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            binary, f"--config.file={root / 'alertmanager.yml'}", f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn",
            stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=root)
    child = Child(proc, "alertmanager")
    try:
        await _ready(bench, f"{url}/-/ready", proc)

        async def once(n: int, label: str, fail_rate: float, seed: int) -> dict[str, Any]:
            await bench.rx("reset", base=rx, fail_rate=fail_rate, seed=seed)
            alerts = [{"labels": {"alertname": "BenchFanout", "run": label, "unit": f"u{i:04d}"},
                       "annotations": {"summary": f"bench alert {i} of run {label}"}} for i in range(n)]
            cpu0 = cpu_seconds(proc.pid)
            t0 = time.monotonic()
            async with bench.http.post(f"{url}/api/v2/alerts", json=alerts) as r:
                if r.status != 200:
                    raise BenchError(f"Alertmanager answered {r.status}: {(await r.text())[:200]}")
            out = await settle(bench, rx, n, t0, time.monotonic(), fail_rate)
            # utime + stime of the process over POST -> last arrival, as for the gateway's runs
            cpu = cpu_seconds(proc.pid) - cpu0
            out.update(cpu_s=cpu, cpu_per_1000=cpu / n * 1000)
            return out

        res = await measure(bench, rx, once, quick, fail=True)
    finally:
        await child.stop()
    # "alertmanager, version 0.25.0 (branch: ...)"
    words = version[0].replace(",", "").split() if version else []
    number = words[words.index("version") + 1] if "version" in words[:-1] else "?"
    return {"note": "measured", "version": f"Alertmanager {number}", "version_line": version[:1], **res}


async def _ready(bench: Bench, url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise BenchError(f"alertmanager exited with {proc.returncode}")
        with contextlib.suppress(aiohttp.ClientError):
            async with bench.http.get(url) as r:
                if r.status == 200:
                    return
        await asyncio.sleep(0.1)
    raise BenchError("alertmanager not ready within 20 s")


# ---------------------------------------------------------------- Apprise
async def apprise(bench: Bench, rx_port: int, quick: bool) -> dict[str, Any]:
    lib = importlib.import_module("apprise")  # untyped, optional: never imported by the gateway
    rx = f"http://127.0.0.1:{rx_port}"

    async def once(n: int, label: str, fail_rate: float, seed: int) -> dict[str, Any]:
        await bench.rx("reset", base=rx, fail_rate=fail_rate, seed=seed)
        obj = lib.Apprise()
        for i in range(n):
            if not obj.add(f"json://127.0.0.1:{rx_port}/hook/apprise/{label}/{i}"):
                raise BenchError("Apprise refused a json:// URL")
        t0 = time.monotonic()
        ok = await asyncio.to_thread(obj.notify, title="bench", body=f"bench notification, run {label}")
        out = await settle(bench, rx, n, t0, time.monotonic(), fail_rate)
        out["notify_ok"] = bool(ok)
        return out

    res = await measure(bench, rx, once, quick, fail=False)
    return {"note": "measured", "version": f"Apprise {lib.__version__}", "cpus": os.cpu_count(), **res}
