"""Aliyun SMS and voice: wiring (always behind the failover composite), template metadata,
delivery receipts (pull and push)."""

from gateway.providers.aliyun.wiring import build_failover
from gateway.providers.base import Provider

PROVIDER = Provider(
    name="aliyun", kinds=("sms", "voice"), enabled=lambda cfg: cfg.channels.aliyun.enabled,
    rate=lambda cfg, kind: cfg.channels.aliyun.sms_rate if kind == "sms" else cfg.channels.aliyun.voice_rate,
    timeout=lambda cfg: cfg.channels.aliyun.timeout, default_weight=100, failover_only=True,
    build=build_failover,
)
