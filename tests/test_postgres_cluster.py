"""Several gateway daemons on one PostgreSQL, through the real path: processes, HTTP, signed
webhooks to a local receiver. Each test gets its own throwaway database.

The restart/outage test stops the machine's PostgreSQL for a moment (pg_ctlcluster, as root);
it always starts it again, and skips with a reason where it cannot control the server.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from gateway.store.pg_conn import CHANNEL
from gateway.store.postgres import PostgresStore
from tests.conftest import WEBHOOK_SECRET, DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, Daemon, metric_value
from tests.support.pg import can_control_cluster, pg_ctl, throwaway_database, wait_until_up
from tests.support.receiver import Receiver

UNITS, ENDPOINTS = 40, 125  # the roster's 40 units x 125 webhook endpoints each
TOTAL = UNITS * ENDPOINTS
CONCURRENCY = 32


@pytest.fixture
def pg_db() -> Iterator[str]:
    with throwaway_database("gw_cluster") as (_, url):
        yield url


def cluster_config(url: str, receiver: Receiver, *, lease: float) -> dict[str, Any]:
    urls = [{"url": receiver.url(f"/hook/{{unit_id}}/{i}")} for i in range(ENDPOINTS)]
    return {
        "store": {"url": url},
        "roster": {"extra_contacts": {"*": urls}},
        "channels": {"webhook": {"enabled": True, "timeout": 5.0, "per_endpoint": CONCURRENCY},
                     "twilio": {"enabled": False}},
        "dispatch": {"backoff_initial": 0.2, "concurrency": CONCURRENCY, "lease_seconds": lease},
        "sandbox": {"enabled": False},
    }


async def start_cluster(factory: DaemonFactory, cfg: dict[str, Any], n: int = 3) -> list[Daemon]:
    # started together: they race to migrate the empty database, which the advisory lock settles.
    # Three cold starts at once share the CPU (20-30 s each on a loaded 2-CPU box), hence the deadline.
    daemons = [await factory(cfg, ALL_ROLES_POLICY, name=f"gw{i}", start=False) for i in range(n)]
    await asyncio.gather(*(d.start(timeout=90) for d in daemons))
    print(f"\nspawn to ready: {', '.join(f'{d.start_seconds:.1f}s' for d in daemons)}")
    return daemons


async def post_fanout(d: Daemon, event_id: str) -> None:
    status, answer = await d.call("POST", "/v1/events", json_body={
        "type": "warning.issued", "level": "red", "id": event_id})
    assert status == 202 and answer["deliveries"] == TOTAL, answer


async def wait_delivered(receiver: Receiver, n: int, timeout: float) -> None:
    """Poll (cheaply) until `n` distinct deliveries were answered 2xx."""
    deadline = time.monotonic() + timeout
    while len(receiver.delivered_ids()) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(receiver.delivered_ids())} of {n} delivered after {timeout}s")
        await asyncio.sleep(0.1)


async def finished_view(d: Daemon, event_id: str, receiver: Receiver) -> dict[str, Any]:
    """The event once every delivery is terminal, checked against what the receiver got."""
    body = await d.wait_event(event_id, lambda b: b["summary"]["by_status"] == {"delivered": TOTAL}, timeout=60)
    assert receiver.delivered_ids() == {x["id"] for x in body["deliveries"]}
    return body


def duplicates(receiver: Receiver) -> int:
    return sum(n - 1 for n in receiver.count_by_id().values() if n > 1)


def worker_id(d: Daemon) -> str:
    return next(str(e["worker_id"]) for e in d.log_events() if e.get("event") == "gateway_started")


async def db_rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(url)
    try:
        return [dict(r.items()) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def woken_by_notify(store: PostgresStore, url: str) -> float:
    """Seconds until wait_for_work returns after a NOTIFY on the outbox channel."""
    waiting = asyncio.create_task(store.wait_for_work(10.0))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await db_rows(url, "SELECT pg_notify($1, '')", CHANNEL)
    await asyncio.wait_for(waiting, 10.0)
    return time.monotonic() - started


async def readyz(d: Daemon) -> int:
    async with aiohttp.ClientSession() as s, s.get(d.url + "/readyz") as r:
        return r.status


@pytest.mark.slow
async def test_three_daemons_share_5000_deliveries_each_sent_once(
    pg_db: str, daemon_factory: DaemonFactory
) -> None:
    async with Receiver(WEBHOOK_SECRET, delay=0.01) as receiver:
        daemons = await start_cluster(daemon_factory, cluster_config(pg_db, receiver, lease=30.0))
        started = time.monotonic()
        await post_fanout(daemons[0], "fanout")
        await wait_delivered(receiver, TOTAL, timeout=120)
        elapsed = time.monotonic() - started
        await finished_view(daemons[2], "fanout", receiver)
        assert duplicates(receiver) == 0 and len(receiver.received) == TOTAL
        assert all(r.signature_ok for r in receiver.received)
        per_worker = {r["worker_id"]: r["n"] for r in await db_rows(
            pg_db, "SELECT worker_id, COUNT(*) AS n FROM deliveries GROUP BY worker_id")}
        assert set(per_worker) == {worker_id(d) for d in daemons}, per_worker  # all three did work
        print(f"\n3 daemons: {TOTAL} deliveries in {elapsed:.1f}s; per instance {sorted(per_worker.values())}")


@pytest.mark.slow
async def test_kill9_one_of_three_the_others_finish_its_leases(pg_db: str, daemon_factory: DaemonFactory) -> None:
    async with Receiver(WEBHOOK_SECRET, delay=0.02) as receiver:
        daemons = await start_cluster(daemon_factory, cluster_config(pg_db, receiver, lease=3.0))
        victim = daemons[1]
        victim_id = worker_id(victim)
        await post_fanout(daemons[0], "kill")
        await wait_delivered(receiver, 1000, timeout=60)
        # idle instances poll about once a second: make sure the victim has joined in
        for _ in range(200):
            if await db_rows(pg_db, "SELECT 1 FROM deliveries WHERE status='leased' AND worker_id=$1 LIMIT 1",
                             victim_id):
                break
            await asyncio.sleep(0.05)
        victim.kill9()
        killed_at = time.monotonic()
        held = (await db_rows(pg_db, "SELECT COUNT(*) AS n FROM deliveries WHERE status='leased' AND worker_id=$1",
                              victim_id))[0]["n"]
        assert len(receiver.delivered_ids()) < TOTAL, "the run ended before the kill"

        body = await finished_view(daemons[0], "kill", receiver)
        dups = duplicates(receiver)
        # only what the dead instance held can go out twice, and only after it died
        assert dups <= held, (dups, held)
        arrivals: dict[str, list[float]] = {}
        for r in receiver.received:
            arrivals.setdefault(r.webhook_id, []).append(r.at)
        assert all(sorted(ts)[1] >= killed_at for ts in arrivals.values() if len(ts) > 1)
        reclaimed = sum(1 for x in body["deliveries"] if x["attempts"] > 1)  # the crashed try still counts
        # held = sends in flight (<= CONCURRENCY) + finished sends whose outcome was not committed
        # yet: the dispatcher frees a slot when the send returns, not when its outcome is durable
        assert held <= 2 * CONCURRENCY, (dups, held)
        print(f"\nkill -9: victim held {held} leases; {dups} duplicates; {reclaimed} deliveries took 2 attempts")


@pytest.mark.slow
async def test_postgres_restart_and_outage_mid_run_lose_nothing(pg_db: str, daemon_factory: DaemonFactory) -> None:
    if not can_control_cluster():
        pytest.skip("needs root and pg_ctlcluster to restart the local PostgreSQL")
    async with Receiver(WEBHOOK_SECRET, delay=0.25) as receiver:  # slow, so the run spans both outages
        daemons = await start_cluster(daemon_factory, cluster_config(pg_db, receiver, lease=30.0))
        await post_fanout(daemons[0], "restart")
        await wait_delivered(receiver, 500, timeout=60)
        await asyncio.sleep(2.5)  # one stats tick: the queue depth every instance reports is the database's
        depth = [metric_value(await d.metrics(), "gateway_queue_depth", channel="webhook") for d in daemons]
        assert all(n > 0 for n in depth), depth

        watcher = PostgresStore(pg_db)  # an idle instance, parked on LISTEN
        await watcher.open()
        try:
            await watcher.wait_for_work(0.01)
            try:
                await asyncio.to_thread(pg_ctl, "restart")
            finally:
                await asyncio.to_thread(wait_until_up, pg_db)
            assert len(receiver.delivered_ids()) < TOTAL, "the run ended before the restart"
            await wait_delivered(receiver, len(receiver.delivered_ids()) + 300, timeout=60)  # flowing again
            await watcher.wait_for_work(0.5)  # notices the lost listener and listens again
            assert await woken_by_notify(watcher, pg_db) < 2.0
        finally:
            await watcher.close()

        try:
            await asyncio.to_thread(pg_ctl, "stop")
            assert [await readyz(d) for d in daemons] == [503, 503, 503]
        finally:
            await asyncio.to_thread(pg_ctl, "start")
            await asyncio.to_thread(wait_until_up, pg_db)
        assert [await readyz(d) for d in daemons] == [200, 200, 200]
        assert len(receiver.delivered_ids()) < TOTAL, "the run ended before the outage"

        await finished_view(daemons[1], "restart", receiver)
        assert duplicates(receiver) == 0  # leases (30s) outlived both outages: nothing was resent
        assert all(d.proc is not None and d.proc.poll() is None for d in daemons)


async def test_migrate_cli_copies_a_sqlite_store_with_its_audit_chain(pg_db: str, tmp_path: Path) -> None:
    from tests.store.helpers import ev, make_store, scenario
    from tests.store.test_reports import rep, req

    report_req, unit_report = req(chain="o1", due=3.0), rep(at=2.0)

    src_url = f"sqlite:///{tmp_path / 'gw.db'}"
    lite = make_store(src_url)
    await lite.open()
    try:
        before = await scenario(lite)
        await lite.log_receipt("r-a", "delivered", None, 1.0, True)
        await lite.insert_public({"id": "pm1", "event_id": "o1", "text": "公众", "channels": ["sms"],
                                  "requester": "media", "state": "pending_approval", "created_at": 1.0,
                                  "expires_at": 2.0})
        await lite.open_report_request(report_req)
        await lite.add_report(unit_report, corrections_until=3.0)
        from gateway.store.records import RosterDoc

        roster = RosterDoc(revision=1, version="v1", text="units: []", source="seed:x", by="seed", at=1.0)
        assert await lite.put_roster(roster)
    finally:
        await lite.close()

    cli = [sys.executable, "-m", "gateway", "migrate"]
    done = await asyncio.to_thread(subprocess.run, [*cli, "--from", src_url, "--to", pg_db],
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for copied in ("events 3", "deliveries 6", "unit_acks 4", "ack_log 1", "receipts 1", "public_messages 1",
                   "report_requests 1", "unit_reports 1", "audit 4", "roster_revisions 1", "verified"):
        assert copied in done.stdout, done.stdout

    pg = PostgresStore(pg_db)
    await pg.open()
    try:
        for key in ("o1", "r1", "n1"):
            assert await pg.get_event(key) == before[key]
        assert await pg.list_audit(after=0, limit=10) == before["audit"]
        assert await pg.list_events(status=None, limit=10) == before["list"]
        for key, row in before["rows"].items():  # every column of every delivery, as SQLite had it
            got = await pg.delivery(delivery_id=key) or {}
            got.pop("lease_token")
            assert got == row
        assert (await pg.get_public("pm1") or {}).get("channels") == ["sms"]
        assert await pg.report_request(request_id=report_req.id) == report_req
        assert [r.version for r in await pg.unit_reports(report_req.id)] == [1]
        assert await pg.current_roster() == roster
        assert await pg.append_audit(at=5.0, principal="p", action="a", subject="s", detail={}) == 5
        await pg.record_event(ev("after"), [], [])  # the copied identity sequences moved on
    finally:
        await pg.close()

    again = await asyncio.to_thread(subprocess.run, [*cli, "--from", src_url, "--to", pg_db],
                                    capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "refusing to merge" in again.stderr
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"store:\n  url: {pg_db}\n")
    current = await asyncio.to_thread(subprocess.run, [*cli, "--config", str(cfg)], capture_output=True, text=True,
                                      timeout=60)
    latest = len(list((Path(__file__).parents[1] / "gateway/store/migrations_pg").glob("*.sql")))
    assert current.returncode == 0 and f"already at schema version {latest}" in current.stdout, current.stderr
