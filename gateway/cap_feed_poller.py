"""The CAP feed source (`intake.cap_feeds`): poll each feed's Atom/RSS index with ETag and
If-Modified-Since, fetch each new entry's CAP and hand it to intake, taking every entry exactly
once across restarts and instances (the store's CapFeedEntries port: claim, then finish).

A feed's errors (unreachable, an HTTP error, not a feed, an entry's CAP unreachable) are logged
and counted in `gateway_cap_feed_errors_total{feed,kind}`; none of them stops the poller or the
daemon. A refused entry (invalid CAP, outside our remit, ...) is taken as refused: retrying it
would refuse it again. A transient failure releases the entry for the next poll, and the feed's
validators are kept only once every entry of that index was taken, so a 304 never hides one."""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from gateway.cap_feed import FeedEntry, FeedError, parse_index
from gateway.config import CapFeedCfg
from gateway.logs import get as get_logger
from gateway.metrics import Metrics
from gateway.store.ports import CapFeedEntries
from gateway.store.records import FeedKey

__all__ = ["CapFeedPoller", "Refused"]

log = get_logger("gateway.cap_feed")
LEASE_SECONDS = 60.0  # a claim older than this is a crashed holder's: another may take the entry
MAX_INDEX_BYTES = 8 * 1024 * 1024
ERROR_KINDS = ("fetch", "status", "parse", "entry_fetch", "store", "internal")
OUTCOMES = ("accepted", "replayed", "recorded", "refused")


class Refused(Exception):
    """Intake refused the entry's CAP for good (its code, e.g. `invalid_cap`, `not_our_area`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


Take = Callable[[bytes, str], Awaitable[tuple[int, dict[str, Any]]]]


@dataclass
class _Validators:
    etag: str | None = None
    last_modified: str | None = None


def _order(entries: list[FeedEntry]) -> list[FeedEntry]:
    """Oldest first, so an Alert is taken before the Update that continues it (feeds list newest first)."""
    def key(item: tuple[int, FeedEntry]) -> tuple[float, int]:
        n, e = item
        try:
            return datetime.fromisoformat(e.sent).timestamp(), -n
        except ValueError:
            return float("inf"), -n
    return [e for _, e in sorted(enumerate(entries), key=key)]


class CapFeedPoller:
    def __init__(self, feeds: list[CapFeedCfg], store: CapFeedEntries, take: Take, metrics: Metrics, *,
                 max_entry_bytes: int) -> None:
        self.feeds = feeds
        self.store = store
        self.take = take
        self.metrics = metrics
        self.max_entry_bytes = max_entry_bytes
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._validators = {f.url: _Validators() for f in feeds}
        self._session: aiohttp.ClientSession | None = None
        for f in feeds:  # every series up front, so dashboards see zeros
            for kind in ERROR_KINDS:
                metrics.cap_feed_errors.labels(f.sender, kind)
            for outcome in OUTCOMES:
                metrics.cap_feed_entries.labels(f.sender, outcome)

    def open(self) -> None:
        """Open the HTTP session the polls share (call before the first `poll`)."""
        self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def crashed(self, feed: CapFeedCfg, exc: Exception) -> None:
        """A poll raised (a bug: `poll` handles every expected error): log it and count it; the
        scheduler polls the feed again at its next time. Called inside the `except`."""
        log.exception("cap_feed_poll_crashed", feed=feed.sender, url=feed.url, error=type(exc).__name__)
        self._error(feed, "internal")

    def _error(self, feed: CapFeedCfg, kind: str) -> None:
        self.metrics.cap_feed_errors.labels(feed.sender, kind).inc()

    async def _get(self, url: str, limit: int, timeout: float,
                   headers: dict[str, str] | None = None) -> tuple[int, bytes, aiohttp.ClientResponse]:
        assert self._session is not None
        async with self._session.get(url, headers=headers or {}, allow_redirects=True,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            body = await r.content.read(limit + 1) if r.status == 200 else b""
            if len(body) > limit:
                raise FeedError(f"{url}: more than {limit} bytes")
            return r.status, body, r

    async def poll(self, feed: CapFeedCfg) -> None:
        """One poll of one feed: errors are logged and counted here, never raised (but cancellation)."""
        v = self._validators[feed.url]
        headers = {k: h for k, h in (("If-None-Match", v.etag), ("If-Modified-Since", v.last_modified)) if h}
        try:
            status, raw, resp = await self._get(feed.url, MAX_INDEX_BYTES, feed.timeout, headers)
        except (aiohttp.ClientError, TimeoutError, FeedError) as exc:
            log.warning("cap_feed_unreachable", feed=feed.sender, url=feed.url, error=f"{type(exc).__name__}: {exc}")
            self._error(feed, "fetch")
            return
        if status == 304:
            return
        if status != 200:
            log.warning("cap_feed_http_error", feed=feed.sender, url=feed.url, status=status)
            self._error(feed, "status")
            return
        try:
            entries = parse_index(raw, str(resp.url))
        except FeedError as exc:
            log.warning("cap_feed_unreadable", feed=feed.sender, url=feed.url, error=str(exc))
            self._error(feed, "parse")
            return
        if await self._take_all(feed, entries):
            v.etag, v.last_modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")

    async def _take_all(self, feed: CapFeedCfg, entries: list[FeedEntry]) -> bool:
        """True when every entry is taken (by us now, or before, or by another instance)."""
        keys = {e: FeedKey(feed.sender, e.identifier, e.sent) for e in entries}
        try:
            taken = await self.store.taken_feed_entries(list(keys.values()))
        except Exception as exc:
            log.warning("cap_feed_store_failed", feed=feed.sender, error=f"{type(exc).__name__}: {exc}")
            self._error(feed, "store")
            return False
        complete = True
        for entry in _order(entries):
            if keys[entry] not in taken:
                complete = await self._take_one(feed, entry, keys[entry]) and complete
        return complete

    async def _take_one(self, feed: CapFeedCfg, entry: FeedEntry, key: FeedKey) -> bool:
        try:
            if not await self.store.claim_feed_entry(key, holder=self.holder, at=time.time(),
                                                     lease_for=LEASE_SECONDS):
                return False  # another instance holds it: it is seen again on the next poll
        except Exception as exc:
            log.warning("cap_feed_store_failed", feed=feed.sender, error=f"{type(exc).__name__}: {exc}")
            self._error(feed, "store")
            return False
        try:
            status, raw, _ = await self._get(entry.link, self.max_entry_bytes, feed.timeout)
            if status != 200:
                raise FeedError(f"HTTP {status}")
        except (aiohttp.ClientError, TimeoutError, FeedError) as exc:
            log.warning("cap_feed_entry_unreachable", feed=feed.sender, entry=entry.identifier, url=entry.link,
                        error=f"{type(exc).__name__}: {exc}")
            self._error(feed, "entry_fetch")
            await self._release(key)
            return False
        return await self._hand_over(feed, entry, key, raw)

    async def _hand_over(self, feed: CapFeedCfg, entry: FeedEntry, key: FeedKey, raw: bytes) -> bool:
        event_id: str | None = None
        try:
            status, answer = await self.take(raw, f"feed:{feed.sender}")
        except Refused as exc:
            outcome = f"refused:{exc.code}"
            log.warning("cap_feed_entry_refused", feed=feed.sender, entry=entry.identifier, code=exc.code,
                        reason=str(exc))
            self.metrics.cap_feed_entries.labels(feed.sender, "refused").inc()
        except Exception:
            log.exception("cap_feed_entry_failed", feed=feed.sender, entry=entry.identifier)
            self._error(feed, "internal")
            await self._release(key)
            return False
        else:
            event_id = answer.get("event_id")
            outcome = "accepted" if status == 202 else "replayed" if event_id else "recorded"
            log.info("cap_feed_entry_taken", feed=feed.sender, entry=entry.identifier, event_id=event_id,
                     outcome=outcome)
            self.metrics.cap_feed_entries.labels(feed.sender, outcome).inc()
        try:
            await self.store.finish_feed_entry(key, holder=self.holder, at=time.time(), outcome=outcome,
                                               event_id=event_id)
        except Exception as exc:  # the event is durable; the entry is replayed (200) after the lease
            log.warning("cap_feed_store_failed", feed=feed.sender, error=f"{type(exc).__name__}: {exc}")
            self._error(feed, "store")
            return False
        return True

    async def _release(self, key: FeedKey) -> None:
        with contextlib.suppress(Exception):  # failing that, the claim lapses after the lease
            await self.store.release_feed_entry(key, holder=self.holder)
