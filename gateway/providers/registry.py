"""The one list of built-in providers.

A provider is a package `gateway/providers/<name>/` whose `__init__.py` declares its `Provider`
(gateway/providers/base.py); generic code (the wiring, the failover composite in
gateway/dispatch/failover.py, the delivery metadata) reads these records instead of naming a
provider. Their HTTP callbacks are listed in gateway/providers/callbacks.py.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.providers import aliyun, twilio, webhook
from gateway.providers.base import Provider
from gateway.store.base import OutboxItem

# build order: plain slots first, the failover composite (wrapping them) last
PROVIDERS: tuple[Provider, ...] = (webhook.PROVIDER, twilio.PROVIDER, aliyun.PROVIDER)


def provider(name: str) -> Provider:
    """Raises KeyError: no such provider."""
    return {p.name: p for p in PROVIDERS}[name]


def delivery_meta(base_url: str, item: OutboxItem) -> Mapping[str, str]:
    """What a delivery's send carries: its id, and what each provider serving its channel needs."""
    out = {"delivery_id": item.id}
    for p in PROVIDERS:
        if p.meta is not None and item.channel in p.kinds:
            out.update(p.meta(base_url, item))
    return out
