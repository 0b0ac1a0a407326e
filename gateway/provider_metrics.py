"""Per-provider metrics and alarms for failover channels (issue 8), on the gateway's registry.

`gateway_provider_sends_total{channel,provider,result}` and `gateway_provider_up{channel,provider}`
sit beside design.md section 7's contract metrics (which stay per channel). Label values are
bounded: channel kinds, the configured provider names and a fixed set of results.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.logs import get as get_logger

log = get_logger("gateway.failover")

RESULTS = ("ok", "transient_error", "rate_limited", "permanent_error", "misconfigured")


class ProviderMetrics:
    """The FailoverObserver of the gateway: counts sends, tracks health, logs demotions."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register both metrics on `registry` (the one /metrics exposes)."""
        self.sends = Counter("gateway_provider_sends", "Send attempts per provider behind a failover channel",
                             ["channel", "provider", "result"], registry=registry)
        self.up = Gauge("gateway_provider_up", "1 while a provider takes traffic; 0 while demoted",
                        ["channel", "provider"], registry=registry)

    def register(self, channel: str, providers: Iterable[str]) -> None:
        """Create every series up front so dashboards see zeros, not gaps."""
        for p in providers:
            for r in RESULTS:
                self.sends.labels(channel, p, r)
            self.up.labels(channel, p).set(1)

    def sent(self, channel: str, provider: str, result: str) -> None:
        """Count one attempt."""
        self.sends.labels(channel, provider, result).inc()

    def health(self, channel: str, provider: str, up: bool, reason: str) -> None:
        """Set the gauge and raise (or clear) the alarm in the log."""
        self.up.labels(channel, provider).set(1 if up else 0)
        if up:
            log.info("provider_recovered", channel=channel, provider=provider)
        else:
            log.error("provider_demoted", channel=channel, provider=provider, reason=reason,
                      note="traffic moves to the next provider until a probe succeeds")
