"""Aliyun SMS and voice, always behind the failover composite (gateway/dispatch/failover.py).

Aliyun's part of the composite: its adapters, the approved template and parameters each send
carries (gateway/templates_cn.py), and its receipts (pushed and pulled). References are stored as
"aliyun:<BizId|CallId>" (our receipt code looks them up so).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import OrderedDict
from collections.abc import Sequence
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
from channels.base import Channel
from gateway import logs
from gateway.dispatch import failover
from gateway.dispatcher import ChannelSlot
from gateway.events import Event
from gateway.policy import load_policy
from gateway.provider_metrics import ProviderMetrics
from gateway.providers.aliyun.receipts import AliyunReceipts
from gateway.render import LEVELS, sms_segments
from gateway.templates_cn import check_template_mapping, fill, rendered_text, resolve

if TYPE_CHECKING:
    from gateway.daemon import Gateway
    from gateway.providers.base import Provider

log = logs.get("gateway.aliyun")


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
        values.update(level_name=LEVELS.get(event.level.value if event.level else "", ("", "", ""))[0],
                      area=event.area, unit_name=d["unit_name"], ack="", ack_url="", ack_token="")
        roster_unit = self.gw.runtime.roster.units.get(d["unit_id"])
        values["action"] = self.gw.renderer.action(ctx, roster_unit.actions) if roster_unit else ""
        unit = next((u for u in view["units"] if u["unit_id"] == d["unit_id"]), None)
        if unit and unit["ack_required"] and unit["ack_deadline"]:
            window = datetime.fromisoformat(unit["ack_deadline"].replace("Z", "+00:00")) - accepted
            minutes = max(1, round(window.total_seconds() / 60))  # the deadline is kept to the ms
            values["ack"] = f"{minutes // 60}小时" if minutes % 60 == 0 else f"{minutes}分钟"
            values["ack_token"] = self.gw.links.token(d["id"])
            values["ack_url"] = self.gw.links.url(d["id"])
        return values


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


async def build_failover(gw: Gateway, slots: dict[str, ChannelSlot],
                         providers: Sequence[Provider]) -> dict[str, ChannelSlot]:
    """The `sms` and `voice` slots as failover channels (replacing the plain ones of providers
    that have them, e.g. Twilio's).

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
    for p in providers:  # the plain slots already built, e.g. Twilio's
        for kind in failover.KINDS:
            if kind in p.kinds and not p.failover_only and p.enabled(gw.config) and kind in slots:
                adapters[(p.name, kind)] = slots[kind].channel
    metrics = ProviderMetrics(gw.metrics.registry)
    composites = failover.composites(gw.config, providers, adapters, observer=metrics)
    for kind, composite in composites.items():
        metrics.register(kind, composite.providers)
    token = os.environ.get(cfg.aliyun.receipt_token_env or "", "") or None
    if token:
        logs.register_secret(token)
    receipts = AliyunReceipts(store=gw.store, apply=gw.receipts.apply, slow_after=cfg.failover.slow_after,
                              sms=ali_sms, composites=composites, token=token)
    gw.aliyun_receipts = receipts
    out = failover.slots(gw.config, providers, composites, enrich=TemplateContexts(gw).meta_for, track=receipts.track)
    for kind, composite in composites.items():
        log.info("failover_channel_built", channel=kind, providers=composite.providers)
    _start_receipts(gw, receipts, ali_sms is not None)
    return out


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

    gw.closers.append(stop)
    log.info("aliyun_receipts_started", pull_interval=interval if pull else None, push=receipts.token is not None)
