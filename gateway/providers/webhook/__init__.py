"""Signed webhooks to unit and platform endpoints: the shared secret and the channel's wiring."""

from gateway.providers.base import Provider

PROVIDER = Provider(
    name="webhook", kinds=("webhook",), enabled=lambda cfg: cfg.channels.webhook.enabled,
    rate=lambda cfg, kind: float("inf"), timeout=lambda cfg: cfg.channels.webhook.timeout,
)
