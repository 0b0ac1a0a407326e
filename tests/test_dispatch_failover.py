"""The generic failover composite (gateway/dispatch/failover.py): chains, rates, timeouts and
reference forms come from the providers' records, never from a provider's name in the code."""

from __future__ import annotations

from channels.base import Destination, Message
from gateway.config import Config
from gateway.dispatch import failover
from gateway.providers.registry import PROVIDERS, delivery_meta
from gateway.store.base import OutboxItem
from tests.test_failover import FakeProvider


def config(**channels: object) -> Config:
    return Config.model_validate({"channels": channels})


def test_default_chain_is_every_enabled_provider_at_its_weight_and_a_configured_one_wins() -> None:
    both = config(twilio={"enabled": True}, aliyun={"enabled": True})
    assert [(p.provider, p.weight) for p in failover.chain(both, "sms", PROVIDERS)] == [("aliyun", 100), ("twilio", 10)]
    assert failover.wanted(both, PROVIDERS) and not failover.wanted(config(twilio={"enabled": True}), PROVIDERS)
    chosen = config(twilio={"enabled": True}, failover={"voice": [{"provider": "twilio", "weight": 5}]})
    assert [(p.provider, p.weight) for p in failover.chain(chosen, "voice", PROVIDERS)] == [("twilio", 5)]
    assert failover.wanted(chosen, PROVIDERS)


async def test_slots_take_the_slowest_rate_and_shortest_timeout_and_swap_a_provider_inside() -> None:
    cfg = config(twilio={"enabled": True, "sms_rate": 4.0, "timeout": 15.0},
                 aliyun={"enabled": True, "sms_rate": 20.0, "timeout": 10.0})
    ali, tw = FakeProvider("sms"), FakeProvider("sms")
    built = failover.composites(cfg, PROVIDERS, {("aliyun", "sms"): ali, ("twilio", "sms"): tw})
    assert list(built) == ["sms"] and built["sms"].providers == ["aliyun", "twilio"]
    seen: list[tuple[str, str]] = []

    async def enrich(kind: str, delivery_id: str) -> dict[str, str]:
        return {"template": f"{kind}:{delivery_id}"}

    slot = failover.slots(cfg, PROVIDERS, built, enrich=enrich,
                          track=lambda kind, key, dest, res: seen.append((kind, key)))["sms"]
    assert slot.bucket is not None and slot.bucket.rate == 4.0
    assert (slot.timeout, slot.per_endpoint) == (10.0, 20)
    result = await slot.channel.send(Message("hi", meta={"delivery_id": "dl_1"}), Destination("+8613800000000"),
                                     key="dl_1", timeout=1.0)
    assert ali.sent == ["dl_1"] and seen == [("sms", "dl_1")]
    assert result.provider_ref is not None and failover.provider_of(built["sms"], result.provider_ref) == "aliyun"
    assert failover.provider_of(built["sms"], "SM123") == "twilio"  # bare: the one provider storing refs so
    fresh = FakeProvider("sms")
    slot.swap("twilio", fresh)
    assert isinstance(slot.channel, failover.EnrichedChannel)
    assert built["sms"].replace("twilio", tw) is fresh


def item(channel: str, payload: str = "") -> OutboxItem:
    return OutboxItem(id="dl_1", event_id="ev", unit_id="u", channel=channel, address="x", endpoint_key=channel,
                      text="t", payload=payload, attempts=0, max_attempts=3, deadline=0.0, lease_token="l",
                      accepted_at=0.0, level=None, status="actual")


def test_delivery_meta_gathers_what_each_provider_of_the_channel_needs() -> None:
    base = "http://gw:1"
    assert delivery_meta(base, item("webhook", "{}")) == {"delivery_id": "dl_1"}
    assert delivery_meta(base, item("webhook", "<?xml ?>")) == {"delivery_id": "dl_1",
                                                                 "content_type": "application/cap+xml"}
    assert delivery_meta(base, item("voice")) == {
        "delivery_id": "dl_1", "status_callback": "http://gw:1/v1/callbacks/twilio/status",
        "gather_action": "http://gw:1/v1/callbacks/twilio/voice/dl_1"}
    assert delivery_meta(base, item("pager")) == {"delivery_id": "dl_1"}  # a plugin's channel
