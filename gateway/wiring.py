"""The one place that imports channel adapters and builds them from config (house style:
vendor code in leaf modules, one wiring module). Third-party adapters come in through the
`gateway.channels` entry-point group and `channels.plugins` in the config."""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channels.base import Channel
from channels.signing import generate_secret
from channels.webhook import WebhookChannel
from gateway import logs
from gateway.dispatch import failover
from gateway.dispatcher import ChannelSlot
from gateway.ratelimit import TokenBucket

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logs.get("gateway.wiring")


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


async def build_channels(gw: Gateway) -> dict[str, ChannelSlot]:
    """Raises ValueError for a plugin that cannot be found or built."""
    cfg = gw.config.channels
    slots: dict[str, ChannelSlot] = {}
    if cfg.webhook.enabled:
        secret = webhook_secret(gw)
        logs.register_secret(secret)
        gw.extras["webhook_secret"] = secret
        wh = WebhookChannel(secret, per_endpoint_concurrency=cfg.webhook.per_endpoint,
                            breaker_threshold=cfg.webhook.breaker_threshold,
                            breaker_cooldown=cfg.webhook.breaker_cooldown)
        slots["webhook"] = ChannelSlot(wh, per_endpoint=cfg.webhook.per_endpoint, timeout=cfg.webhook.timeout)
    if cfg.twilio.enabled:
        from gateway.providers.twilio.wiring import build_twilio

        slots.update(await build_twilio(gw))
    for name, plugin in cfg.plugins.items():
        slots[name] = ChannelSlot(_load_plugin(name, plugin.entry_point or name, plugin.options),
                                  per_endpoint=plugin.per_endpoint, timeout=plugin.timeout,
                                  bucket=TokenBucket(plugin.rate) if plugin.rate else None)
    if failover.wanted(gw.config):
        from gateway.providers.aliyun.wiring import build_failover  # issue 8: Aliyun + provider failover

        slots.update(await build_failover(gw, slots))
    return slots


def _load_plugin(name: str, ep_name: str, options: dict[str, Any]) -> Channel:
    found = [ep for ep in entry_points(group="gateway.channels") if ep.name == ep_name]
    if not found:
        raise ValueError(f"channel plugin {name}: no entry point {ep_name!r} in group gateway.channels")
    factory = found[0].load()
    channel = factory(**options)
    if not isinstance(channel, Channel):
        raise ValueError(f"channel plugin {name}: {ep_name} does not implement the Channel protocol")
    return channel
