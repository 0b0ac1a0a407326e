"""The daemon's periodic work, each use case's round registered on its own with the scheduler.

Intervals: escalation steps, draft and sign-off expiry and sign-off notices every second;
reminders and the report schedule every `dispatch.reminder_check_seconds`; receipt timeouts a
quarter of `channels.twilio.receipt_timeout` (0.2–5 s); queue gauges every 2 s; each CAP feed
at its own `interval`; the roster revision every second.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from gateway import clock
from gateway.cap_feed_poller import CapFeedPoller
from gateway.jobs.scheduler import Scheduler

if TYPE_CHECKING:
    from gateway.daemon import Gateway

EVERY_SECOND = 1.0
STATS_EVERY = 2.0


def register(jobs: Scheduler, gw: Gateway, *, feeds: CapFeedPoller | None) -> None:
    """Register every periodic job of a started daemon (its flows, channels and dispatcher built)."""
    cfg = gw.config
    rounds = cfg.dispatch.reminder_check_seconds
    jobs.every("escalation", EVERY_SECOND, gw.escalation.escalate_once, failed="escalation_round_failed")
    jobs.every("reminders", rounds, lambda: gw.reminders.remind_once(clock.now()), failed="reminder_round_failed")
    jobs.every("report-schedule", rounds, gw.report_schedule.schedule_once, failed="report_schedule_round_failed")
    jobs.every("public-expiry", EVERY_SECOND, gw.public.expire, failed="public_expiry_failed")
    jobs.every("signoff-expiry", EVERY_SECOND, gw.signoff.expire, failed="signoff_expiry_failed")
    jobs.every("signoff-notices", EVERY_SECOND, gw.signoff_notices.notify_once, failed="signoff_notices_failed")
    jobs.every("roster-revision", EVERY_SECOND, gw.directory_desk.refresh, failed="roster_refresh_failed")
    jobs.every("stats", STATS_EVERY, gw.update_stats, failed="stats_update_failed")
    if "sms" in gw.channels or "voice" in gw.channels:
        receipts = gw.receipts
        jobs.every("receipt-timeouts", receipts.timeout_interval, receipts.follow_up_stale,
                   failed="receipt_timeout_check_failed")
    if feeds is not None:
        for feed in feeds.feeds:
            jobs.every(f"cap-feed:{feed.sender}:{feed.url}", feed.interval, partial(feeds.poll, feed),
                       on_error=partial(feeds.crashed, feed))
