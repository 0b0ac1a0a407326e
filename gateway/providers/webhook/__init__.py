"""Signed webhooks to unit and platform endpoints: the shared secret and the channel's wiring."""

from gateway.providers.base import Provider
from gateway.providers.webhook.wiring import build_webhook, webhook_meta

PROVIDER = Provider(
    name="webhook", kinds=("webhook",), enabled=lambda cfg: cfg.channels.webhook.enabled,
    rate=lambda cfg, kind: float("inf"), timeout=lambda cfg: cfg.channels.webhook.timeout,
    build=build_webhook, meta=webhook_meta,
)
