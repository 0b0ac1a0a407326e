"""The CAP feed source through the real daemon: a local warning platform publishes an Atom index
of CAP messages; the gateway polls it with ETag / If-Modified-Since, takes every entry exactly
once across a restart, in the order they were sent, and lives through the feed's failures."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, Daemon, all_terminal, free_port, metric_value
from tests.support.receiver import Receiver
from tests.test_cap import cap_config

DATA = Path(__file__).parent / "data" / "cap"
ORANGE_ID, RED_ID, CANCEL_ID = (f"14052500000000_{t}_1" for t in ("20261128100000", "20261129080000",
                                                                    "20261201090000"))
SENDER = "jincheng-platform"


@dataclass
class FeedServer:
    """A warning platform's feed: entries (newest first, as platforms list them), ETag support."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (id, updated, CAP path)
    port: int = field(default_factory=free_port)
    gets: Counter[str] = field(default_factory=Counter)
    not_modified: int = 0
    conditional: int = 0
    fail_index: int = 0  # answer the next N index requests with 503
    runner: web.AppRunner | None = None
    version: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/warnings/atom.xml"

    def publish(self, identifier: str, updated: str, cap_file: str) -> None:
        self.entries.insert(0, (identifier, updated, f"/cap/{cap_file}"))
        self.version += 1

    def atom(self) -> bytes:
        items = "".join(
            f"<entry><id>{i}</id><title>预警 {i}</title><updated>{u}</updated>"
            f'<link rel="alternate" type="application/cap+xml" href="{p}"/></entry>'
            for i, u, p in self.entries)
        return ('<?xml version="1.0" encoding="UTF-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
                f"<id>urn:jincheng:warnings</id><title>晋城市预警信息</title><updated>2026-12-01T09:00:00+08:00"
                f"</updated>{items}</feed>").encode()

    async def index(self, request: web.Request) -> web.Response:
        self.gets["index"] += 1
        if self.fail_index:
            self.fail_index -= 1
            return web.Response(status=503, text="maintenance")
        etag = f'"v{self.version}"'
        if request.headers.get("If-None-Match") or request.headers.get("If-Modified-Since"):
            self.conditional += 1
        if request.headers.get("If-None-Match") == etag:
            self.not_modified += 1
            return web.Response(status=304)
        last_modified = format_datetime(datetime(2026, 12, 1, 1, self.version, tzinfo=UTC), usegmt=True)
        return web.Response(body=self.atom(), content_type="application/atom+xml",
                            headers={"ETag": etag, "Last-Modified": last_modified})

    async def cap(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.gets[name] += 1
        path = DATA / name
        if not path.exists():
            return web.Response(status=404)
        return web.Response(body=path.read_bytes(), content_type="application/cap+xml")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/warnings/atom.xml", self.index)
        app.router.add_get("/cap/{name}", self.cap)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def event_ids(d: Daemon) -> list[str]:
    _, listing = await d.call("GET", "/v1/events", token="reader")
    return [e["id"] for e in listing["events"]]


async def metrics(d: Daemon) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(d.url + "/metrics") as r:
        return await r.text()


async def test_feed_entries_are_taken_once_across_a_restart(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    feed = FeedServer()
    await feed.start()
    try:
        # newest first in the index; the gateway takes them oldest first, so the Update finds its Alert
        feed.publish(ORANGE_ID, "2026-11-28T10:00:00+08:00", "zezhou-orange.xml")
        feed.publish(RED_ID, "2026-11-29T08:00:00+08:00", "zezhou-red-update.xml")
        feed.publish("gone", "2026-11-29T09:00:00+08:00", "missing.xml")  # 404: retried, counted
        feed.publish("gaoping", "2026-11-29T10:00:00+08:00", "gaoping-orange.xml")  # not ours: refused once
        cfg = {**cap_config(receiver), "cap": {"areas": ["140525", "泽州县"]},
               "intake": {"cap_feeds": [{"url": feed.url, "interval": 0.2, "sender": SENDER}]}}
        d = await daemon_factory(cfg, ALL_ROLES_POLICY)

        async def both() -> bool:
            return set(await event_ids(d)) == {ORANGE_ID, RED_ID}
        await wait_for(both)
        red = await d.wait_event(RED_ID, all_terminal)
        assert (red["type"], red["supersedes"], red["source"], red["submitted_by"]) == (
            "warning.upgraded", ORANGE_ID, "cap_feed", f"feed:{SENDER}")

        async def retried() -> bool:
            return feed.gets["missing.xml"] >= 3
        await wait_for(retried)
        text = await metrics(d)
        assert metric_value(text, "gateway_cap_feed_errors_total", feed=SENDER, kind="entry_fetch") >= 3
        assert metric_value(text, "gateway_cap_feed_entries_total", feed=SENDER, outcome="accepted") == 2
        assert metric_value(text, "gateway_cap_feed_entries_total", feed=SENDER, outcome="refused") == 1
        assert feed.conditional == 0  # an index with an entry not yet taken is fetched whole again

        # the platform withdraws the broken entry: the index settles and polls become conditional
        feed.entries = [e for e in feed.entries if e[0] != "gone"]
        feed.version += 1

        async def settled() -> bool:
            return feed.not_modified >= 3
        await wait_for(settled)
        assert feed.conditional >= feed.not_modified

        feed.fail_index = 3  # the platform is down for a while: counted, never fatal

        async def recovered() -> bool:
            return feed.fail_index == 0 and feed.not_modified >= 5
        await wait_for(recovered)
        assert metric_value(await metrics(d), "gateway_cap_feed_errors_total", feed=SENDER, kind="status") == 3
        assert (await d.call("GET", "/healthz", token=None))[0] == 200
        assert "request_crashed" not in d.logs() and "cap_feed_poll_crashed" not in d.logs()
        await d.stop()

        # after the restart (validators forgotten: the index is fetched whole) nothing is taken twice
        feed.publish(CANCEL_ID, "2026-12-01T09:00:00+08:00", "zezhou-cancel.xml")
        await d.start()

        async def lifted() -> bool:
            return CANCEL_ID in await event_ids(d)
        await wait_for(lifted)
        lift = await d.wait_event(CANCEL_ID, all_terminal)
        assert (lift["type"], lift["supersedes"]) == ("warning.lifted", RED_ID)
        await wait_for(settled)
        for name in ("zezhou-orange.xml", "zezhou-red-update.xml", "gaoping-orange.xml", "zezhou-cancel.xml"):
            assert feed.gets[name] == 1, (name, feed.gets)  # each fetched, and taken, exactly once
        assert sorted(await event_ids(d)) == sorted([ORANGE_ID, RED_ID, CANCEL_ID])
        _, trail = await d.call("GET", "/v1/audit?limit=500", token="admin")
        accepted = [r["subject"] for r in trail["records"] if r["action"] == "event_accepted"]
        assert sorted(accepted) == sorted([ORANGE_ID, RED_ID, CANCEL_ID])
        refused = [e for e in d.log_events() if e.get("event") == "cap_feed_entry_refused"]
        assert [e["code"] for e in refused] == ["not_our_area"]
    finally:
        await feed.stop()


async def test_two_instances_on_postgresql_take_each_entry_once(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    from tests.support.pg import throwaway_database

    feed = FeedServer()
    await feed.start()
    files = {ORANGE_ID: "zezhou-orange.xml", "14052500000000_20261201080000_1": "zezhou-orange-v11.xml",
             "ZZ-HPW-2026-0031": "zezhou-yellow-v10.xml"}
    for n, (identifier, name) in enumerate(files.items()):
        feed.publish(identifier, f"2026-12-01T0{n}:00:00+08:00", name)
    try:
        with throwaway_database("gw_feed") as (_, url):
            cfg = {**cap_config(receiver), "store": {"url": url},
                   "intake": {"cap_feeds": [{"url": feed.url, "interval": 0.1, "sender": SENDER}]}}
            first, second = [await daemon_factory(cfg, ALL_ROLES_POLICY, name=f"gw{i}", start=False)
                             for i in range(2)]
            # started together (they race to migrate the empty database; its advisory lock settles
            # that) and polling the same index: the claims decide who takes which entry
            await asyncio.gather(first.start(timeout=90), second.start(timeout=90))

            async def all_taken() -> bool:
                return sorted(await event_ids(second)) == sorted(files)
            await wait_for(all_taken)

            async def both_settled() -> bool:
                return feed.not_modified >= 6  # both instances polled the settled index a few times
            await wait_for(both_settled)
            assert all(feed.gets[name] == 1 for name in files.values()), feed.gets  # fetched once in all
            taken = [metric_value(await metrics(d), "gateway_cap_feed_entries_total", feed=SENDER,
                                  outcome="accepted") for d in (first, second)]
            assert sum(taken) == 3, taken
            _, trail = await first.call("GET", "/v1/audit?limit=500", token="admin")
            assert sorted(r["subject"] for r in trail["records"] if r["action"] == "event_accepted") == sorted(files)
            for d in (first, second):
                await d.stop()
    finally:
        await feed.stop()
