"""The failover composite over whichever providers serve a channel kind, built from config.

Each of `sms` / `voice` becomes one `FailoverChannel` (channels/failover.py) over the providers
of its chain (`channels.failover.<kind>`, else every enabled provider serving the kind at its
default weight). Nothing here names a provider: the providers (gateway/providers/registry.py)
are passed in, what differs between them (rates, timeouts, bare references) comes from their
`Provider` records, and what one adds to each send (Aliyun's template metadata) comes in as an
`Enricher`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from channels.base import Channel, Destination, Message, SendResult
from channels.failover import FailoverChannel, FailoverObserver, FailoverPolicy
from gateway.attempts import ChannelSlot
from gateway.config import Config, FailoverProviderCfg
from gateway.providers.base import Provider
from gateway.ratelimit import TokenBucket

KINDS = ("sms", "voice")
# (kind, delivery id) -> metadata added to the message for the providers that read it
Enricher = Callable[[str, str], Awaitable[dict[str, str]]]
# (kind, idempotency key, destination, result): each send that went through
Tracker = Callable[[str, str, Destination, SendResult], None]


def wanted(config: Config, providers: Sequence[Provider]) -> bool:
    """True when sms / voice go through the composite: a chain is configured, or an enabled
    provider that only sends through it (one without a plain slot of its own: Aliyun)."""
    fo = config.channels.failover
    return bool(fo.sms or fo.voice) or any(p.enabled(config) and p.failover_only for p in providers)


def chain(config: Config, kind: str, providers: Sequence[Provider]) -> list[FailoverProviderCfg]:
    """The configured chain of a kind, else every enabled provider serving it, highest weight first."""
    configured: list[FailoverProviderCfg] = getattr(config.channels.failover, kind)
    if configured:
        return configured
    found = [p for p in providers if kind in p.kinds and p.enabled(config)]
    return [FailoverProviderCfg(provider=p.name, weight=p.default_weight)
            for p in sorted(found, key=lambda p: -p.default_weight)]


def policy(config: Config) -> FailoverPolicy:
    fo = config.channels.failover
    return FailoverPolicy(error_threshold=fo.error_threshold, error_window=fo.error_window, cooldown=fo.cooldown,
                          misconfigured_cooldown=fo.misconfigured_cooldown, slow_after=fo.slow_after,
                          slow_ratio=fo.slow_ratio, min_receipts=fo.min_receipts)


def composites(config: Config, providers: Sequence[Provider], adapters: Mapping[tuple[str, str], Channel],
               observer: FailoverObserver | None = None) -> dict[str, FailoverChannel]:
    """One composite per kind over the adapters (by (provider, kind)) its chain names; a kind
    without any is left out."""
    pol = policy(config)
    bare = {p.name for p in providers if p.bare_refs}
    out: dict[str, FailoverChannel] = {}
    for kind in KINDS:
        members = [(p.provider, adapters[(p.provider, kind)], p.weight) for p in chain(config, kind, providers)
                   if (p.provider, kind) in adapters]
        if members:
            out[kind] = FailoverChannel(kind, members, policy=pol, observer=observer, bare_refs=bare)
    return out


def provider_of(composite: FailoverChannel, ref: str) -> str | None:
    """The provider that produced a reference: its prefix, else the composite's one provider
    with bare references (None when that is ambiguous)."""
    named = composite.split_ref(ref)[0]
    if named is not None:
        return named
    bare = [p for p in composite.providers if p in composite.bare_refs]
    return bare[0] if len(bare) == 1 else None


class EnrichedChannel:
    """A failover channel whose sends carry each provider's extra metadata; `track` sees each success."""

    def __init__(self, inner: FailoverChannel, enrich: Enricher | None, track: Tracker | None) -> None:
        """Wrap `inner` (its name is the channel kind)."""
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self._enrich = enrich
        self._track = track

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """Add the metadata and send through the failover channel.

        Raises:
            Transient, RateLimited, Permanent, Misconfigured: as FailoverChannel.send.
        """
        if self._enrich is not None:
            extra = await self._enrich(self.name, message.meta.get("delivery_id") or key)
            if extra:
                message = Message(message.text, message.payload, {**message.meta, **extra})
        result = await self.inner.send(message, dest, key=key, timeout=timeout)
        if self._track is not None:
            self._track(self.name, key, dest, result)
        return result

    def is_up(self) -> bool:
        """False only while every provider is demoted (the gateway_channel_up gauge)."""
        return self.inner.is_up()

    async def aclose(self) -> None:
        """Close every provider."""
        await self.inner.aclose()


class FailoverSlot(ChannelSlot):
    """A slot whose channel stays the composite: swapping one provider's adapter (credentials
    reloaded on SIGHUP) replaces it inside the composite."""

    def swap(self, provider_name: str, channel: Channel) -> None:
        current: Any = self.channel
        if isinstance(current, EnrichedChannel):
            if provider_name in current.inner.providers:
                current.inner.replace(provider_name, channel)
            return
        super().swap(provider_name, channel)


def slots(config: Config, providers: Sequence[Provider], built: Mapping[str, FailoverChannel], *,
          enrich: Enricher | None, track: Tracker | None) -> dict[str, ChannelSlot]:
    """The `sms` / `voice` slots over the composites. One bucket per slot at the slowest
    provider's rate, so a shift never exceeds its limit; a send gets the shortest timeout."""
    out: dict[str, ChannelSlot] = {}
    for kind, composite in built.items():
        by_name = {p.name: p for p in providers}
        members = [by_name[p] for p in composite.providers]
        rate = min(p.rate(config, kind) for p in members)
        out[kind] = FailoverSlot(EnrichedChannel(composite, enrich, track),
                                 per_endpoint=max(1, min(config.dispatch.concurrency, int(rate * 5))),
                                 timeout=min(p.timeout(config) for p in members), bucket=TokenBucket(rate))
    return out
