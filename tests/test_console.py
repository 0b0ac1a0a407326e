"""The console's server side through the real daemon: the page and its headers, `/v1/me`, the
live stream (`/v1/stream`, server-sent events) and the issue form's preview (`/v1/preview`)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.render import sms_segments
from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, Daemon
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config
from tests.test_twilio_flow import ENV, SID, TOKEN, twilio_config

STATIC = Path(__file__).parents[1] / "gateway" / "static"
ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00"}
THREE = ["county_education_bureau", "county_transport_bureau", "township_dadonggou"]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.02, auto_press=True))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[name][0]}"}


async def sse(resp: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """(event name, parsed data) for each server-sent message; comments (pings) are skipped."""
    name = "message"
    data: list[str] = []
    async for raw in resp.content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


async def test_page_and_assets_are_served_with_security_headers(receiver: Receiver, daemon_factory: DaemonFactory
                                                                ) -> None:
    d = await daemon_factory(webhook_config(receiver))
    async with aiohttp.ClientSession() as s:
        async with s.get(d.url + "/") as r:
            assert r.status == 200 and r.content_type == "text/html"
            page = await r.text()
            csp = r.headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            assert r.headers["Referrer-Policy"] == "no-referrer"
        assert 'src="/static/app.js"' in page and 'lang="zh-CN"' in page
        # every module the page loads is served, with the same headers and a JS type
        imported = r"from '\./([\w-]+\.js)'"
        modules = {"app.js"} | {m for f in STATIC.glob("*.js") for m in re.findall(imported, f.read_text())}
        for name in sorted(modules | {"app.css"}):
            async with s.get(f"{d.url}/static/{name}") as r:
                assert r.status == 200, name
                assert r.content_type == ("text/css" if name.endswith(".css") else "text/javascript")
                assert r.headers["X-Content-Type-Options"] == "nosniff"
                assert ".innerHTML" not in await r.text()  # server strings are only ever set as text
        for bad in ("nope.js", "..%2Fdaemon.py", "app.py"):
            async with s.get(f"{d.url}/static/{bad}") as r:
                assert r.status == 404
                assert (await r.json())["error"]["code"] == "not_found"


async def test_me_names_the_principal_and_what_it_may_do(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver))
    assert (await d.call("GET", "/v1/me", token=None))[0] == 401
    status, body = await d.call("GET", "/v1/me", token="not-a-token")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    status, body = await d.call("GET", "/v1/me", token="reader")
    assert status == 200 and body["principal"] == "reader" and body["scopes"] == ["events:read"]
    assert body["can"]["events:read"] and not body["can"]["events:write"] and not body["can"]["acks:write"]
    _, body = await d.call("GET", "/v1/me", token="admin")
    # admin implies every scope but approval (the two-person rule needs a named leader)
    assert body["can"]["acks:write"] and body["can"]["public:request"] and not body["can"]["public:approve"]


async def test_stream_requires_a_token_with_events_read(
    receiver: Receiver, daemon_factory: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(TOKENS, "ackonly", ("tok-ackonly-0123456789", ["acks:write"]))
    d = await daemon_factory(webhook_config(receiver))
    async with aiohttp.ClientSession() as s:
        for query, headers, status, code in (
            ("", {}, 401, "unauthorized"),
            ("?token=wrong", {}, 401, "unauthorized"),
            ("", bearer("ackonly"), 403, "forbidden"),
            (f"?token={TOKENS['ackonly'][0]}", {}, 403, "forbidden"),
            (f"?token={TOKENS['reader'][0]}&event=no-such-event", {}, 404, "not_found"),
        ):
            async with s.get(d.url + "/v1/stream" + query, headers=headers) as r:
                assert r.status == status, query
                assert (await r.json())["error"]["code"] == code
    # the query token is never written to the log
    assert TOKENS["ackonly"][0] not in d.logs() and TOKENS["reader"][0] not in d.logs()


async def read_until(resp: aiohttp.ClientResponse, want: Any, timeout: float = 30.0) -> list[tuple[str, Any]]:
    """Messages up to and including the first for which want(name, data) holds."""
    seen: list[tuple[str, Any]] = []

    async def run() -> None:
        async for name, data in sse(resp):
            seen.append((name, data))
            if want(name, data):
                return
        raise AssertionError(f"stream ended; seen {[n for n, _ in seen]}")

    await asyncio.wait_for(run(), timeout)
    return seen


async def test_stream_sends_snapshots_that_change_as_deliveries_complete(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    receiver.slow("/hook", 1.0)  # slow enough to see the deliveries in flight first
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    status, answer = await d.call("POST", "/v1/events",
                                  json_body={**ORANGE, "id": "live-1", "audience": {"units": THREE}})
    assert status == 202, answer
    done = lambda n, b: n == "event" and b["summary"]["by_status"] == {"delivered": 3}  # noqa: E731
    async with aiohttp.ClientSession() as s, s.get(
        d.url + "/v1/stream?event=live-1", headers={**bearer("reader"), "Accept": "text/event-stream"}
    ) as r:
        assert r.status == 200 and r.content_type == "text/event-stream"
        seen = await read_until(r, done)
    names = [n for n, _ in seen]
    assert names[0] == "meta" and "chains" in names and "ops" in names
    meta = seen[0][1]
    assert meta["principal"] == "reader" and meta["channels"] == ["webhook"]
    assert meta["roles"]["township"] == "乡镇人民政府" and meta["groups"]["coordination"] == "综合协调组"
    chains = next(b for n, b in seen if n == "chains")
    assert [e["id"] for e in chains["active"]] == ["live-1"]
    ops = next(b for n, b in seen if n == "ops")
    assert [c["name"] for c in ops["channels"]] == ["webhook"] and ops["channels"][0]["up"] is True
    events = [b for n, b in seen if n == "event"]
    assert len(events) >= 2, "the snapshot is sent again when deliveries change"
    assert events[0]["summary"]["by_status"] != {"delivered": 3}
    assert len({json.dumps(e, sort_keys=True) for e in events}) == len(events), "sent only on change"
    last = events[-1]
    assert {u["unit_id"] for u in last["units"]} == set(THREE)
    assert all(u["role"] and u["listed"] for u in last["units"])
    assert {x["status"] for x in last["deliveries"]} == {"delivered"}
    assert "text" not in last["deliveries"][0] and "payload" not in last["deliveries"][0]


async def test_open_streams_do_not_hold_up_a_graceful_stop(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver))
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/stream?token={TOKENS['reader'][0]}") as r:
        await read_until(r, lambda n, _: n == "ops")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await d.stop(timeout=10) == 0
        assert loop.time() - t0 < 8
        await asyncio.wait_for(r.content.read(), 5)  # the stream ended cleanly with the daemon


async def test_preview_renders_and_counts_segments_without_storing(
    sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d: Daemon = await daemon_factory(twilio_config(sandbox, receiver), env=ENV)
    status, p = await d.call("POST", "/v1/preview", json_body={**ORANGE, "headline": "泽州县橙色预警"})
    assert status == 200, p
    sms = p["sms"]
    assert sms["text"].startswith("【泽州县人民政府】") and "橙色预警，启动Ⅱ级应急响应" in sms["text"]
    assert sms["segments"] == sms_segments(sms["text"]) <= 2 and sms["max_segments"] == 2
    assert sms["chars"] == len(sms["text"]) and not sms["over_budget"] and "problem" not in p
    assert "/a/" in sms["text"], "the sample is the longest SMS: one that carries an ack link"
    assert p["voice"]["text"] and p["by_channel"]["sms"] == sms["recipients"] >= 1
    assert p["units"] >= 30 and p["deliveries"] == sum(p["by_channel"].values())
    # a long body is fitted (issue 14: cut at a clause, named in the warnings), not over the budget
    long_body = {**ORANGE, "body": "请严格落实各项减排措施。" * 20}
    status, p = await d.call("POST", "/v1/preview", json_body=long_body)
    assert status == 200 and not p["sms"]["over_budget"] and p["sms"]["segments"] <= 2 and "problem" not in p
    assert any("headline/body cut" in w for w in p["warnings"]), p["warnings"]
    # with strict_length the cut is the problem intake would refuse, shown rather than refused
    status, p = await d.call("POST", "/v1/preview", json_body={**long_body, "strict_length": True})
    assert status == 200 and p["problem"]["code"] == "message_too_long" and p["problem"]["field"] == "$.body"
    # nothing was stored or sent
    assert (await d.call("GET", "/v1/events", token="reader"))[1]["events"] == []
    assert not sandbox.records


async def test_preview_rejects_bad_input_in_the_contract_shape(receiver: Receiver, daemon_factory: DaemonFactory
                                                               ) -> None:
    d = await daemon_factory(webhook_config(receiver))
    for body, code, field in (
        ({"type": "warning.issued"}, "invalid_event", None),
        ({"type": "warning.sideways", "level": "orange"}, "invalid_field", "$.type"),
        ({**ORANGE, "level": "purple"}, "invalid_field", "$.level"),
        ({**ORANGE, "audience": {"roles": ["nobody"]}}, "unknown_audience", "$.audience"),
        ({**ORANGE, "type": "warning.upgraded", "level": "red", "supersedes": "nope"}, "unknown_supersedes",
         "$.supersedes"),
        ([ORANGE], "invalid_event", "$"),
    ):
        status, answer = await d.call("POST", "/v1/preview", json_body=body)
        assert status == 422, (body, answer)
        assert answer["error"]["code"] == code, answer
        if field:
            assert answer["error"]["field"] == field
    status, answer = await d.call("POST", "/v1/preview", data=b"{not json",
                                  headers={"Content-Type": "application/json"})
    assert status == 400 and answer["error"]["code"] == "malformed_json"
    assert (await d.call("POST", "/v1/preview", json_body=ORANGE, token="reader"))[0] == 403
    assert (await d.call("POST", "/v1/preview", json_body=ORANGE, token=None))[0] == 401
