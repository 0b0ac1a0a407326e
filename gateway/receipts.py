"""Per-delivery callback addresses handed to adapters (status callbacks, keypress action)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway.store.base import OutboxItem

if TYPE_CHECKING:
    from gateway.daemon import Gateway


def delivery_meta(gw: Gateway, item: OutboxItem) -> Mapping[str, str]:
    if item.channel == "webhook":
        return {"delivery_id": item.id}
    base = gw.base_url
    return {
        "delivery_id": item.id,
        "status_callback": f"{base}/v1/callbacks/twilio/status",
        "gather_action": f"{base}/v1/callbacks/twilio/voice/{item.id}",
    }
