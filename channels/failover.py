"""Provider failover for one channel kind: several providers behind one `Channel`.

Each send goes to the highest-priority healthy provider (priority = weight, highest first) that
can carry the message (`can_send(message, dest)` when a provider has it: e.g. Aliyun only for
mainland numbers with an approved template). A provider is demoted for a cool-down when
- its transient errors (not rate limiting, which the token bucket handles) reach
  `error_threshold` within `error_window` seconds,
- it raises Misconfigured (credentials, unapproved sign or template), or
- its receipts are slow or failing: more than `slow_ratio` of the last receipts reported through
  `report_receipt()` within `receipt_window` seconds were not ok within `slow_after` seconds
  (issue 8: "more than 15% of messages not delivered within 5 minutes").
After the cool-down one send probes it (concurrent sends keep using the next provider); success
promotes it back, failure demotes it again.

A Misconfigured provider that is not the last one able to take the message is skipped *within the
same send*: the provider rejected the request, so nothing went out and no attempt is burned. The
last one re-raises Misconfigured, so the dispatcher pauses the channel and raises its alarm.
Transient errors are raised as they are: the outbox retries them (the next try goes elsewhere
once the provider is demoted); retrying a timed-out send on another provider at once could
deliver twice.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from channels.base import (
    Capabilities,
    Channel,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    RateLimited,
    SendResult,
    Transient,
)


class FailoverObserver(Protocol):
    """Told about every provider attempt and health change (metrics, alarms)."""

    def sent(self, channel: str, provider: str, result: str) -> None:
        """`result`: ok, transient_error, rate_limited, permanent_error or misconfigured."""
        ...

    def health(self, channel: str, provider: str, up: bool, reason: str) -> None:
        """A provider was demoted (`up=False`, with the reason) or promoted back."""
        ...


@dataclass(frozen=True, slots=True)
class FailoverPolicy:
    """When to demote a provider and for how long (seconds; counts)."""

    error_threshold: int = 5
    error_window: float = 60.0
    cooldown: float = 60.0
    misconfigured_cooldown: float = 300.0
    slow_after: float = 300.0
    slow_ratio: float = 0.15
    min_receipts: int = 20
    receipt_window: float = 900.0


@dataclass(eq=False)
class _Provider:
    name: str
    channel: Channel
    weight: int
    errors: deque[float] = field(default_factory=deque)
    receipts: deque[tuple[float, bool]] = field(default_factory=deque)
    down_until: float = 0.0  # 0: healthy
    probing: bool = False
    reason: str = ""

    def can_send(self, message: Message, dest: Destination) -> bool:
        check: Callable[[Message, Destination], bool] | None = getattr(self.channel, "can_send", None)
        return check is None or check(message, dest)


class FailoverChannel:
    """A `Channel` routing each send to the healthiest highest-priority provider.

    `SendResult.provider_ref` becomes `"<provider>:<ref>"`, except for providers named in
    `bare_refs`, whose receipt handlers look their own raw references up (Twilio's SIDs name
    the provider by themselves: SM.../CA...).

    Raises:
        ValueError: no providers, or two with the same name.
    """

    def __init__(self, name: str, providers: Sequence[tuple[str, Channel, int]], *,
                 policy: FailoverPolicy | None = None, clock: Callable[[], float] = time.monotonic,
                 observer: FailoverObserver | None = None, bare_refs: Collection[str] = ()) -> None:
        """Providers are (name, channel, weight); a higher weight is tried first."""
        names = [p[0] for p in providers]
        if not providers or len(set(names)) != len(names):
            raise ValueError(f"failover {name}: need providers with distinct names, got {names}")
        self.name = name
        self.policy = policy or FailoverPolicy()
        self._clock = clock
        self._observer = observer
        self._bare = frozenset(bare_refs)
        ordered = sorted(providers, key=lambda p: -p[2])  # stable: config order breaks ties
        self._providers = [_Provider(n, ch, w) for n, ch, w in ordered]
        caps = [p.channel.capabilities for p in self._providers]
        self.capabilities = Capabilities(max_body_chars=min(c.max_body_chars for c in caps),
                                         receipts=all(c.receipts for c in caps), acks=all(c.acks for c in caps))

    # ---- introspection and hooks
    @property
    def providers(self) -> list[str]:
        """Provider names, highest priority first."""
        return [p.name for p in self._providers]

    @property
    def bare_refs(self) -> frozenset[str]:
        """The providers whose references are passed on unprefixed."""
        return self._bare

    def provider_up(self, provider: str) -> bool:
        """True unless the provider is demoted."""
        return self._get(provider).down_until == 0.0

    def is_up(self) -> bool:
        """True while any provider is healthy or due for a probe (the channel_up gauge reads it)."""
        now = self._clock()
        return any(p.down_until <= now for p in self._providers)

    def replace(self, provider: str, channel: Channel) -> Channel:
        """Swap one provider's adapter (credentials reloaded); returns the old one.

        Raises:
            KeyError: no such provider.
        """
        p = self._get(provider)
        old, p.channel = p.channel, channel
        return old

    def split_ref(self, ref: str) -> tuple[str | None, str]:
        """(provider, raw reference) for a reference this channel produced; (None, ref) if unprefixed."""
        head, sep, rest = ref.partition(":")
        if sep and any(p.name == head for p in self._providers):
            return head, rest
        return None, ref

    def report_receipt(self, provider: str, ok: bool, latency: float) -> None:
        """Record one receipt: `ok` False for a failed message, or a receipt that never came
        (`latency` = how long we waited). Too many bad or slow ones demote the provider.

        Raises:
            KeyError: no such provider.
        """
        p, pol, now = self._get(provider), self.policy, self._clock()
        p.receipts.append((now, ok and latency <= pol.slow_after))
        while p.receipts and p.receipts[0][0] < now - pol.receipt_window:
            p.receipts.popleft()
        if len(p.receipts) >= pol.min_receipts and p.down_until == 0.0:
            bad = sum(1 for _, good in p.receipts if not good)
            if bad / len(p.receipts) > pol.slow_ratio:
                self._demote(p, now, pol.cooldown, f"{bad} of the last {len(p.receipts)} receipts failed "
                                                   f"or took over {pol.slow_after:.0f}s")

    # ---- sending
    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """Send through the chosen provider; see the module docstring for the choice.

        Raises:
            Permanent: no provider can carry this message (e.g. a number abroad, Aliyun only).
            Transient, RateLimited, Permanent, Misconfigured: the carrying provider's failure.
        """
        candidates = self._candidates(message, dest, self._clock())
        for i, p in enumerate(candidates):
            try:
                result = await p.channel.send(message, dest, key=key, timeout=timeout)
            except Misconfigured as exc:
                self._note(p, "misconfigured")
                self._demote(p, self._clock(), self.policy.misconfigured_cooldown, exc.detail)
                if i + 1 < len(candidates):
                    continue
                raise
            except RateLimited:
                self._settle(p, "rate_limited", healthy=True)
                raise
            except Transient:
                self._note(p, "transient_error")
                self._transient(p, self._clock())
                raise
            except Permanent:
                # the provider answered and judged the message: it is up
                self._settle(p, "permanent_error", healthy=True)
                raise
            except BaseException:
                p.probing = False  # cancelled or a bug: no verdict on the provider
                raise
            self._settle(p, "ok", healthy=True)
            return replace(result, provider_ref=self._ref(p, result.provider_ref))
        raise Permanent(FailureReason.CLIENT_ERROR, f"no {self.name} provider can carry this message")

    async def aclose(self) -> None:
        """Close every provider (each adapter's aclose is idempotent)."""
        for p in self._providers:
            await p.channel.aclose()

    # ---- internals
    def _get(self, provider: str) -> _Provider:
        for p in self._providers:
            if p.name == provider:
                return p
        raise KeyError(provider)

    def _candidates(self, message: Message, dest: Destination, now: float) -> list[_Provider]:
        able = [p for p in self._providers if p.can_send(message, dest)]
        out: list[_Provider] = []
        for p in able:
            if p.down_until == 0.0:
                out.append(p)
            elif p.down_until <= now and not p.probing:
                p.probing = True  # this send is the probe; others skip p until it returns
                out.append(p)
        if not out and able:
            # every able provider is demoted: try the one whose cool-down ends first rather than
            # hold the message; the outbox bounds the attempts
            forced = min(able, key=lambda p: p.down_until)
            forced.probing = True
            out.append(forced)
        return out

    def _ref(self, p: _Provider, ref: str | None) -> str | None:
        if ref is None or p.name in self._bare:
            return ref
        return f"{p.name}:{ref}"

    def _note(self, p: _Provider, result: str) -> None:
        if self._observer is not None:
            self._observer.sent(self.name, p.name, result)

    def _settle(self, p: _Provider, result: str, *, healthy: bool) -> None:
        self._note(p, result)
        was_probe, p.probing = p.probing, False
        if healthy and was_probe and p.down_until != 0.0:
            p.down_until, p.reason = 0.0, ""
            p.errors.clear()
            p.receipts.clear()
            if self._observer is not None:
                self._observer.health(self.name, p.name, True, "recovered")

    def _transient(self, p: _Provider, now: float) -> None:
        if p.probing:
            p.probing = False
            self._demote(p, now, self.policy.cooldown, "probe failed")
            return
        p.errors.append(now)
        while p.errors and p.errors[0] < now - self.policy.error_window:
            p.errors.popleft()
        if len(p.errors) >= self.policy.error_threshold and p.down_until == 0.0:
            self._demote(p, now, self.policy.cooldown,
                         f"{len(p.errors)} transient errors within {self.policy.error_window:.0f}s")

    def _demote(self, p: _Provider, now: float, cooldown: float, reason: str) -> None:
        was_up = p.down_until == 0.0
        p.down_until, p.reason, p.probing = now + cooldown, reason, False
        p.errors.clear()
        p.receipts.clear()
        if self._observer is not None and was_up:
            self._observer.health(self.name, p.name, False, reason)
