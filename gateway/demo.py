"""`gateway demo`: a throwaway daemon on the sandbox, an orange warning, live progress."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from gateway import logs
from gateway.config import load_config

TERMINAL = ("delivered", "failed", "cancelled", "expired")


def _line(body: dict[str, Any], elapsed: float) -> str:
    s = body["summary"]
    by = ", ".join(f"{k} {v}" for k, v in sorted(s["by_status"].items()))
    return f"[{elapsed:5.1f}s] {s['deliveries']} deliveries to {s['units']} units: {by}; acked {s['acked']}"


async def run_demo(timeout: float = 120.0) -> int:
    """Returns 0 when every delivery reached a terminal state within `timeout` seconds."""
    # imported here as every sub-command does (see gateway/cli.py): `gateway --help` never pays for the daemon
    from gateway import app

    with tempfile.TemporaryDirectory(prefix="gateway-demo-") as tmp:
        cfg = load_config(None, overrides={"data_dir": tmp, "server.port": 0})
        logs.configure(json_lines=True, level="warning")
        gw = await app.start(cfg)
        try:
            token = (await asyncio.to_thread(Path(tmp, "admin.token").read_text)).strip()
            headers = {"Authorization": f"Bearer {token}"}
            event = {"type": "warning.issued", "level": "orange", "id": f"demo-{int(time.time())}",
                     "valid_from": "2026-01-10T12:00:00+08:00", "headline": "橙色预警演示"}
            start = time.monotonic()
            async with aiohttp.ClientSession(headers=headers) as s:
                async with s.post(f"{gw.base_url}/v1/events", json=event) as r:
                    answer = await r.json()
                print(f"event {answer['event_id']} accepted: {answer['deliveries']} deliveries planned", flush=True)
                if answer.get("state") == "pending_signoff":
                    await _sign(gw.base_url, Path(tmp, "signer.token"), answer["event_id"])
                last = ""
                while time.monotonic() - start < timeout:
                    async with s.get(f"{gw.base_url}/v1/events/{answer['event_id']}") as r:
                        body = await r.json()
                    line = _line(body, time.monotonic() - start)
                    if line.split("]", 1)[1] != last:
                        print(line, flush=True)
                        last = line.split("]", 1)[1]
                    if all(d["status"] in TERMINAL for d in body["deliveries"]):
                        break
                    await asyncio.sleep(0.25)
            print("\nsummary by unit:")
            for u in body["units"]:
                chans = [f"{d['channel']}:{d['status']}" for d in body["deliveries"] if d["unit_id"] == u["unit_id"]]
                ack = f"签收 {u['via']}" if u["acked_at"] else ("未签收" if u["ack_required"] else "")
                print(f"  {u['unit_name']:<24} {' '.join(chans):<40} {ack}")
            done = all(d["status"] in TERMINAL for d in body["deliveries"])
            print(f"\n{'every unit reached' if done else 'NOT finished'} in {time.monotonic() - start:.1f}s; "
                  "nothing left this machine (sandbox).")
            return 0 if done else 1
        finally:
            await gw.stop()


async def _sign(base_url: str, token_file: Path, event_id: str) -> None:
    """Sign (签发) the demo's warning as the sandbox's second principal, `commander`.

    Raises:
        RuntimeError: the gateway refused the signature.
    """
    token = (await asyncio.to_thread(token_file.read_text)).strip()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s, s.post(
            f"{base_url}/v1/events/{event_id}/sign", json={}) as r:
        body = await r.json()
        if r.status != 200:
            raise RuntimeError(f"sign-off refused: {body}")
    print(f"held for sign-off (签发); signed by {body['signoff']['decided_by']}", flush=True)


def main() -> int:
    try:
        return asyncio.run(run_demo())
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
