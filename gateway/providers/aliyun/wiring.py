"""Aliyun SMS/voice and provider failover, built from config into the `sms`/`voice` slots.

When Aliyun is enabled or `channels.failover` names providers, each of `sms` and `voice` becomes
one `FailoverChannel` (channels/failover.py) over the configured providers, wrapped so that each
send carries the approved template and its parameters (gateway/templates_cn.py) for Aliyun.

Reference choice: Aliyun references are stored as "aliyun:<BizId|CallId>" (our receipt code looks
them up so); Twilio's stay bare ("SM..."/"CA...", self-identifying), so gateway/flows/receipts.py keeps
matching Twilio's callbacks unchanged whether or not Twilio sits behind a failover channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from channels.aliyun import (
    META_PARAMS,
    META_SEGMENTS,
    META_TEMPLATE,
    META_TTS_PARAMS,
    META_TTS_TEMPLATE,
    AliyunApi,
    AliyunConfig,
    AliyunSms,
    AliyunVoice,
    template_params,
)
from channels.base import Channel, Destination, Message, SendResult
from channels.failover import FailoverChannel, FailoverPolicy
from gateway import logs
from gateway.config import FailoverProviderCfg
from gateway.dispatcher import ChannelSlot
from gateway.events import Event
from gateway.planner import LINK_VALIDITY
from gateway.policy import load_policy
from gateway.provider_metrics import ProviderMetrics
from gateway.providers.aliyun.receipts import AliyunReceipts
from gateway.ratelimit import TokenBucket
from gateway.render import LEVELS, sms_segments
from gateway.templates_cn import check_template_mapping, fill, rendered_text, resolve

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logs.get("gateway.aliyun")
Tracker = Callable[[str, str, Destination, SendResult], None]


class TemplateContexts:
    """Per-delivery template metadata for Aliyun; event contexts cached per event."""

    def __init__(self, gw: Gateway, size: int = 64) -> None:
        """Keep the last `size` events' contexts."""
        self.gw = gw
        self._events: OrderedDict[str, tuple[Event, dict[str, Any]]] = OrderedDict()
        self._size = size

    async def meta_for(self, kind: str, delivery_id: str) -> dict[str, str]:
        """Template code and parameters for one delivery; {} when no approved template maps it
        (the Aliyun adapter then declines it and the failover channel uses the next provider).

        Raises:
            gateway.store.base.StoreError: the store cannot be read (the dispatcher retries).
        """
        ali = self.gw.config.channels.aliyun
        d = await self.gw.store.delivery(delivery_id=delivery_id)
        if d is None:
            return {}
        event, view = await self._event(d["event_id"])
        templates = ali.templates if kind == "sms" else ali.tts_templates
        tmpl = resolve(templates, event.type.value, event.level.value if event.level else None)
        if tmpl is None or not tmpl.approved:
            return {}
        values, clipped = fill(tmpl, self._context(event, d, view))
        if clipped:
            log.warning("template_params_clipped", delivery_id=delivery_id, event_id=d["event_id"],
                        template=tmpl.code, params=clipped)
        if kind == "voice":
            return {META_TTS_TEMPLATE: tmpl.code, META_TTS_PARAMS: template_params(values)}
        meta = {META_TEMPLATE: tmpl.code, META_PARAMS: template_params(values)}
        text = rendered_text(tmpl, ali.sign_name, values)
        if text is not None:
            meta[META_SEGMENTS] = str(sms_segments(text))
        return meta

    async def _event(self, event_id: str) -> tuple[Event, dict[str, Any]]:
        hit = self._events.get(event_id)
        if hit is None:
            view = await self.gw.store.get_event(event_id)
            hit = (Event.model_validate({**view["event"], "id": event_id}), view)
            self._events[event_id] = hit
            while len(self._events) > self._size:
                self._events.popitem(last=False)
        self._events.move_to_end(event_id)
        return hit

    def _context(self, event: Event, d: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
        accepted = datetime.fromtimestamp(d["accepted_at"], UTC)
        ctx = self.gw.renderer.context(event, d["event_id"], accepted)
        values = dict(ctx.values)
        values.update(level_name=LEVELS.get(event.level.value if event.level else "", ("", ""))[0],
                      area=event.area, unit_name=d["unit_name"], ack="", ack_url="", ack_token="")
        roster_unit = self.gw.runtime.roster.units.get(d["unit_id"])
        values["action"] = self.gw.renderer.action(ctx, roster_unit.actions) if roster_unit else ""
        unit = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
        if unit and unit["ack_required"] and unit["ack_deadline"]:
            window = datetime.fromisoformat(unit["ack_deadline"].replace("Z", "+00:00")) - accepted
            minutes = max(1, round(window.total_seconds() / 60))  # the deadline is kept to the ms
            values["ack"] = f"{minutes // 60}小时" if minutes % 60 == 0 else f"{minutes}分钟"
            expires = (accepted + max(window, LINK_VALIDITY)).timestamp()
            values["ack_token"] = self.gw.links.token(d["id"], expires)
            values["ack_url"] = self.gw.links.url(d["id"], expires)
        return values


class TemplatedChannel:
    """A failover channel whose sends carry Aliyun template metadata; `track` sees each success."""

    def __init__(self, inner: FailoverChannel, contexts: TemplateContexts, track: Tracker | None) -> None:
        """Wrap `inner` (its name is the channel kind)."""
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self._contexts = contexts
        self._track = track

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """Add the template metadata and send through the failover channel.

        Raises:
            Transient, RateLimited, Permanent, Misconfigured: as FailoverChannel.send.
        """
        extra = await self._contexts.meta_for(self.name, message.meta.get("delivery_id") or key)
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


class _FailoverSlot(ChannelSlot):
    """A slot whose channel stays the failover composite: a SIGHUP credential reload
    (gateway/providers/twilio/wiring.py `reload_twilio`) assigns a bare Twilio adapter to `slot.channel`;
    here that swaps the Twilio provider inside the composite instead."""

    def __setattr__(self, name: str, value: Any) -> None:
        current = self.__dict__.get("channel")
        if name == "channel" and isinstance(current, TemplatedChannel) and not isinstance(value, TemplatedChannel):
            if "twilio" in current.inner.providers:
                current.inner.replace("twilio", value)
            return
        super().__setattr__(name, value)


def _aliyun_config(gw: Gateway) -> AliyunConfig:
    """Raises ValueError: credentials missing from the environment."""
    ali = gw.config.channels.aliyun
    key_id = os.environ.get(ali.access_key_id_env, "")
    secret = os.environ.get(ali.access_key_secret_env, "")
    if not key_id or not secret:
        raise ValueError(f"channels.aliyun is enabled: set {ali.access_key_id_env} and {ali.access_key_secret_env}")
    logs.register_secret(secret)
    return AliyunConfig(access_key_id=key_id, access_key_secret=secret, sign_name=ali.sign_name,
                        endpoint=ali.endpoint, voice_endpoint=ali.voice_endpoint,
                        called_show_number=ali.called_show_number, play_times=ali.play_times)


def _chain(gw: Gateway, kind: str) -> list[FailoverProviderCfg]:
    cfg = gw.config.channels
    chain: list[FailoverProviderCfg] = getattr(cfg.failover, kind)
    if chain:
        return chain
    out = [FailoverProviderCfg(provider="aliyun", weight=100)] if cfg.aliyun.enabled else []
    if cfg.twilio.enabled:
        out.append(FailoverProviderCfg(provider="twilio", weight=10))
    return out


async def build_failover(gw: Gateway, slots: dict[str, ChannelSlot]) -> dict[str, ChannelSlot]:
    """The `sms` and `voice` slots as failover channels (replacing Twilio's plain ones).

    Raises:
        ValueError: missing credentials, or the template mapping does not cover the policy
            (every problem named; gateway/templates_cn.py).
    """
    cfg = gw.config.channels
    problems = check_template_mapping(gw.config, load_policy(gw.config.policy.path))
    if problems:
        raise ValueError("Aliyun/failover configuration: " + "; ".join(problems))
    adapters: dict[tuple[str, str], Channel] = {}
    ali_sms: AliyunSms | None = None
    if cfg.aliyun.enabled:
        api = AliyunApi(_aliyun_config(gw))
        ali_sms = AliyunSms(api.config, api=api)
        adapters.update({("aliyun", "sms"): ali_sms, ("aliyun", "voice"): AliyunVoice(api.config, api=api)})
    for kind in ("sms", "voice"):
        if cfg.twilio.enabled and kind in slots:
            adapters[("twilio", kind)] = slots[kind].channel
    metrics = ProviderMetrics(gw.metrics.registry)
    fo = cfg.failover
    policy = FailoverPolicy(error_threshold=fo.error_threshold, error_window=fo.error_window, cooldown=fo.cooldown,
                            misconfigured_cooldown=fo.misconfigured_cooldown, slow_after=fo.slow_after,
                            slow_ratio=fo.slow_ratio, min_receipts=fo.min_receipts)
    composites: dict[str, FailoverChannel] = {}
    for kind in ("sms", "voice"):
        providers = [(p.provider, adapters[(p.provider, kind)], p.weight) for p in _chain(gw, kind)
                     if (p.provider, kind) in adapters]
        if providers:
            composites[kind] = FailoverChannel(kind, providers, policy=policy, observer=metrics, bare_refs={"twilio"})
            metrics.register(kind, composites[kind].providers)
    token = os.environ.get(cfg.aliyun.receipt_token_env or "", "") or None
    if token:
        logs.register_secret(token)
    receipts = AliyunReceipts(gw, sms=ali_sms, composites=composites, token=token)
    gw.extras.update(aliyun_receipts=receipts, provider_metrics=metrics, failover=composites)
    contexts = TemplateContexts(gw)
    out: dict[str, ChannelSlot] = {}
    for kind, composite in composites.items():
        rate = _rate(gw, kind, composite.providers)
        out[kind] = _FailoverSlot(TemplatedChannel(composite, contexts, receipts.track),
                                  per_endpoint=max(1, min(gw.config.dispatch.concurrency, int(rate * 5))),
                                  timeout=cfg.aliyun.timeout, bucket=TokenBucket(rate))
        log.info("failover_channel_built", channel=kind, providers=composite.providers)
    _start_receipts(gw, receipts, ali_sms is not None)
    return out


def _rate(gw: Gateway, kind: str, providers: list[str]) -> float:
    # one bucket per slot: the slowest provider's rate, so a shift never exceeds its limit
    cfg = gw.config.channels
    rates = {"aliyun": cfg.aliyun.sms_rate if kind == "sms" else cfg.aliyun.voice_rate,
             "twilio": cfg.twilio.sms_rate if kind == "sms" else cfg.twilio.voice_rate}
    return min(rates[p] for p in providers)


def _start_receipts(gw: Gateway, receipts: AliyunReceipts, pull: bool) -> None:
    ali = gw.config.channels.aliyun
    pull = pull and ali.query_interval > 0
    interval = ali.query_interval if pull else min(5.0, gw.config.channels.failover.slow_after)
    if not pull:
        receipts.sms = None  # push only: the loop still applies the slow-receipt rule
    task = asyncio.create_task(receipts.run(interval, ali.query_rate, ali.timeout), name="aliyun-receipts")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    gw.extras.setdefault("closers", []).append(stop)
    log.info("aliyun_receipts_started", pull_interval=interval if pull else None, push=receipts.token is not None)
