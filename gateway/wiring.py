"""The channel slots built from config: the built-in providers through their registry
(gateway/providers/), third-party adapters through the `gateway.channels` entry-point group and
`channels.plugins` in the config."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from channels.base import Channel
from gateway import logs
from gateway.dispatch import failover
from gateway.dispatcher import ChannelSlot
from gateway.providers.registry import PROVIDERS
from gateway.ratelimit import TokenBucket

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logs.get("gateway.wiring")


async def build_channels(gw: Gateway) -> dict[str, ChannelSlot]:
    """Every enabled provider's slots (gateway/providers/registry.py), then the plugins, then the
    failover composite over the sms / voice providers when it is wanted.

    Raises:
        ValueError: a provider's configuration or credentials are unusable, or a plugin cannot
            be found or built.
    """
    cfg = gw.config.channels
    slots: dict[str, ChannelSlot] = {}
    for p in PROVIDERS:
        if p.build is not None and not p.failover_only and p.enabled(gw.config):
            slots.update(await p.build(gw, slots, PROVIDERS))
    for name, plugin in cfg.plugins.items():
        slots[name] = ChannelSlot(_load_plugin(name, plugin.entry_point or name, plugin.options),
                                  per_endpoint=plugin.per_endpoint, timeout=plugin.timeout,
                                  bucket=TokenBucket(plugin.rate) if plugin.rate else None)
    if failover.wanted(gw.config, PROVIDERS):
        for p in PROVIDERS:
            if p.build is not None and p.failover_only:
                slots.update(await p.build(gw, slots, PROVIDERS))
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
