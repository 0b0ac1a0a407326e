"""The webhook channel built from config, with the shared signing secret."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from channels.signing import generate_secret
from channels.webhook import WebhookChannel
from gateway import logs
from gateway.attempts import ChannelSlot
from gateway.store.base import OutboxItem

if TYPE_CHECKING:
    from gateway.daemon import Gateway
    from gateway.providers.base import Provider


def webhook_secret(gw: Gateway) -> str:
    """From the environment, else <data-dir>/webhook.secret (created once, mode 0600)."""
    cfg = gw.config.channels.webhook
    env = os.environ.get(cfg.secret_env)
    if env:
        return env
    path = Path(gw.config.data_dir) / "webhook.secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate_secret() + "\n")
    return path.read_text().strip()


async def build_webhook(gw: Gateway, slots: dict[str, ChannelSlot],
                        providers: Sequence[Provider]) -> dict[str, ChannelSlot]:
    """The `webhook` slot."""
    cfg = gw.config.channels.webhook
    secret = webhook_secret(gw)
    logs.register_secret(secret)
    gw.webhook_secret = secret
    wh = WebhookChannel(secret, per_endpoint_concurrency=cfg.per_endpoint, breaker_threshold=cfg.breaker_threshold,
                        breaker_cooldown=cfg.breaker_cooldown)
    return {"webhook": ChannelSlot(wh, per_endpoint=cfg.per_endpoint, timeout=cfg.timeout)}


def webhook_meta(base_url: str, item: OutboxItem) -> Mapping[str, str]:
    """A payload rendered for a `format: cap` endpoint goes out as CAP XML."""
    if item.payload.startswith("<?xml"):
        return {"content_type": "application/cap+xml"}
    return {}
