"""The window between the HTTP site opening and the daemon being ready (and the same at stop):
requests get a clear 503 in the error shape, never a 500 from a flow not built yet."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from gateway.config import load_config
from gateway.daemon import Gateway


async def test_a_request_before_the_flows_are_built_gets_503_starting(tmp_path: Path) -> None:
    cfg = load_config(None, overrides={"data_dir": str(tmp_path), "server.port": 0})
    gw = Gateway(cfg)
    await gw.open()  # store, tokens and HTTP site up, as in gateway/app.py before it builds the flows
    try:
        auth = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        event = {"type": "warning.issued", "level": "orange", "id": "early-1", "headline": "橙色预警"}
        async with aiohttp.ClientSession(headers=auth) as s:
            async with s.post(f"{gw.base_url}/v1/events", json=event) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "1"
                assert (await r.json())["error"]["code"] == "starting"
            async with s.get(f"{gw.base_url}/readyz") as r:  # the probes still answer
                assert r.status == 503
                assert (await r.json())["checks"]["started"] is False
            async with s.get(f"{gw.base_url}/healthz") as r:
                assert r.status == 200
    finally:
        await gw.stop()
