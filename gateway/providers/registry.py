"""The one list of built-in providers.

A provider is a package `gateway/providers/<name>/` whose `__init__.py` declares its `Provider`
(gateway/providers/base.py); generic code (the wiring, the failover composite in
gateway/dispatch/failover.py) reads these records instead of naming a provider.
"""

from __future__ import annotations

from gateway.providers import aliyun, twilio, webhook
from gateway.providers.base import Provider

# the order a default failover chain lists them in
PROVIDERS: tuple[Provider, ...] = (webhook.PROVIDER, aliyun.PROVIDER, twilio.PROVIDER)


def provider(name: str) -> Provider:
    """Raises KeyError: no such provider."""
    return {p.name: p for p in PROVIDERS}[name]
