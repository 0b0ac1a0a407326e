"""Prometheus metrics with the contract's names (design.md section 7), on an injected registry.

Label values come from bounded sets only: never a phone number or an event id.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from channels.base import FailureReason

OUTCOMES = ("delivered", "sent", "failed", "cancelled", "expired")
RESULTS = ("ok", "transient_error", "permanent_error")
LEVELS = ("yellow", "orange", "red", "blue", "none")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    """Every gateway metric; label series for known channels are created up front."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("gateway_events", "Events accepted", ["type", "level", "status", "source"],
                              registry=r)
        self.deliveries = Counter("gateway_deliveries", "Deliveries reaching a terminal or sent state",
                                  ["channel", "outcome"], registry=r)
        self.attempts = Counter("gateway_delivery_attempts", "Send attempts", ["channel", "result"],
                                registry=r)
        self.failures = Counter("gateway_delivery_failures", "Failed attempts by reason",
                                ["channel", "reason"], registry=r)
        self.delivery_latency = Histogram(
            "gateway_delivery_latency_seconds", "Event accepted -> provider accepted",
            ["channel", "level"], buckets=_LATENCY_BUCKETS, registry=r)
        self.ack_latency = Histogram("gateway_ack_latency_seconds", "Event accepted -> unit acknowledged",
                                     ["level"], buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("gateway_queue_depth", "Deliveries not yet terminal", ["channel"],
                                 registry=r)
        self.oldest_pending = Gauge("gateway_oldest_pending_seconds", "Age of the oldest pending delivery",
                                    ["channel"], registry=r)
        self.escalations = Counter("gateway_escalations", "Escalation steps taken", ["level", "step"],
                                   registry=r)
        self.public_messages = Counter("gateway_public_messages", "Public message state changes",
                                       ["state"], registry=r)
        self.channel_up = Gauge("gateway_channel_up", "0 while a circuit is open or credentials rejected",
                                ["channel"], registry=r)
        # CAP feeds (intake.cap_feeds), labelled by the feed's configured sender
        self.cap_feed_entries = Counter("gateway_cap_feed_entries", "CAP feed entries taken, by outcome",
                                        ["feed", "outcome"], registry=r)
        self.cap_feed_errors = Counter("gateway_cap_feed_errors", "CAP feed errors (the poller goes on)",
                                       ["feed", "kind"], registry=r)

        # sign-off (签发) of warnings: drafts by outcome, and how long a signature took
        self.signoffs = Counter("gateway_signoffs", "Warning sign-off decisions",
                                ["level", "outcome"], registry=r)
        self.signoff_wait = Histogram("gateway_signoff_wait_seconds", "Draft accepted -> signed",
                                      ["level"], buckets=_LATENCY_BUCKETS, registry=r)

        # daily reports (信息报送) and summary evaluations filed, by how and whether by the deadline
        self.reports = Counter("gateway_reports", "Unit reports filed (each version)", ["kind", "via", "timing"],
                               registry=r)
        self.report_steps = Counter("gateway_report_steps", "Report schedule steps taken",
                                    ["kind", "step"], registry=r)
        for kind in ("daily", "summary"):
            for via in ("link", "phone", "api"):
                for timing in ("on_time", "late"):
                    self.reports.labels(kind, via, timing)
            for step in ("reminded", "missing", "rollup"):
                self.report_steps.labels(kind, step)

    def register_channels(self, channels: Iterable[str]) -> None:
        """Create every label series for the channels so dashboards see zeros, not gaps."""
        for ch in channels:
            for o in OUTCOMES:
                self.deliveries.labels(ch, o)
            for res in RESULTS:
                self.attempts.labels(ch, res)
            for reason in FailureReason:
                self.failures.labels(ch, reason.value)
            self.queue_depth.labels(ch).set(0)
            self.oldest_pending.labels(ch).set(0)
            self.channel_up.labels(ch).set(1)
