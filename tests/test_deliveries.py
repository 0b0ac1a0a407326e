"""The delivery factory: the one place ids, endpoint keys, attempts, deadlines, cause ids and a
follow-up's contact are decided."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contacts.model import Contact, Unit
from contacts.resolver import Endpoint, Recipient
from gateway.deliveries import (
    Deliveries,
    deadline_for,
    endpoint_key,
    escalation_cause,
    fallback_cause,
    notify_cause,
    public_cause,
)
from gateway.events import Event
from gateway.policy import load_policy

ALL = ("sms", "voice", "webhook")


def unit(*contacts: tuple[str, str], roles: tuple[str, ...] = ()) -> Unit:
    return Unit(id="u1", name="一号单位", aliases=(), roles=roles, groups=(), duties="",
                contacts=tuple(Contact(kind, addr) for kind, addr in contacts))


def factory(channels: tuple[str, ...] = ALL) -> Deliveries:
    return Deliveries(load_policy(), channels, clock=lambda: 1000.0)


def test_build_takes_attempts_from_the_policy_and_the_deadline_from_the_horizon() -> None:
    f = factory()
    policy = load_policy()
    d = f.build(unit_id="u1", unit_name="一号单位", channel="webhook", address="https://a.example:8443/x",
                text="t", payload="{}", cause_id="c")
    assert d.id.startswith("dl_") and len(d.id) == 23
    assert d.endpoint_key == "webhook:https://a.example:8443"
    assert d.max_attempts == policy.max_attempts("webhook")
    assert d.deadline == 1000.0 + policy.horizon.total_seconds()
    assert (d.priority, d.cause_id, d.payload, d.not_before) == (0, "c", "{}", 0.0)
    given = f.build(unit_id="u1", unit_name="n", channel="sms", address="+8613800000000", text="t",
                    priority=3, deadline=5.0, delivery_id="dl_fixed")
    assert (given.id, given.endpoint_key, given.priority, given.deadline, given.cause_id) == (
        "dl_fixed", "sms", 3, 5.0, None)
    assert given.max_attempts == policy.max_attempts("sms")
    assert f.build(unit_id="u", unit_name="n", channel="voice", address="+1", text="t").id != given.id


def test_endpoint_key_and_event_deadline() -> None:
    assert endpoint_key("voice", "+8613800000000") == "voice"
    assert endpoint_key("webhook", "http://h:1/a?b") == "webhook:http://h:1"
    accepted = datetime(2026, 1, 10, 12, tzinfo=UTC)
    ev = Event.model_validate({"type": "notice", "valid_until": "2026-01-10T13:00:00+00:00"})
    assert deadline_for(ev, accepted, timedelta(hours=6)) == (accepted + timedelta(hours=1)).timestamp()
    short = Event.model_validate({"type": "notice", "valid_until": "2026-01-10T12:05:00+00:00"})
    assert deadline_for(short, accepted, timedelta(hours=6)) == (accepted + timedelta(hours=6)).timestamp()


def test_cause_ids_are_stable_and_tell_follow_ups_apart() -> None:
    assert fallback_cause("dl_1") == "dl_1"
    assert escalation_cause("ev", "u1", 2) == "esc:ev:u1:2"
    a = notify_cause("ev", 1, ["u2", "u1"], "sms", "+1")
    assert a == notify_cause("ev", 1, ["u1", "u2"], "sms", "+1")  # the set of units, not their order
    assert a != notify_cause("ev", 1, ["u1"], "sms", "+1")
    assert a.startswith("esc:ev:notify:1:") and a.endswith(":sms:+1")
    assert public_cause("pm", "u1", "https://x") == "pm:u1:https://x"
    assert public_cause("pm", "u1", "https://x", 2) == "pm:u1:https://x:r2"


def test_fallback_after_sms_calls_a_landline_first_and_after_a_call_the_next_unused_number() -> None:
    u = unit(("mobile", "+m1"), ("fixed", "+f1"), ("mobile", "+m2"))
    f = factory()
    assert f.fallback_voice(u, "sms", used={"+m1"}) == "+f1"
    assert f.fallback_voice(u, "voice", used={"+m1", "+f1"}) == "+m2"
    assert f.fallback_voice(u, "voice", used={"+m1", "+f1", "+m2"}) is None
    assert factory(("sms", "webhook")).fallback_voice(u, "sms", used=set()) is None
    assert f.repeat_voice(u) == "+m1"
    assert f.repeat_voice(unit(("url", "https://x"))) is None
    assert factory(("sms",)).repeat_voice(u) is None


def test_office_targets_and_public_webhooks_use_only_enabled_channels() -> None:
    office = unit(("fixed", "+f1"), ("mobile", "+m1"), ("mobile", "+m2"), ("url", "https://o/1"))
    assert factory().office_targets(office) == [("webhook", "https://o/1"), ("sms", "+m1")]
    assert factory(("voice",)).office_targets(office) == [("voice", "+f1")]
    assert factory(("voice",)).office_targets(unit(("mobile", "+m1"))) == []
    assert factory().webhooks(office) == ["https://o/1"]
    assert factory(("sms",)).webhooks(office) == []


def test_plan_targets_turn_sms_to_a_landline_only_unit_into_voice_and_warn_of_disabled_channels() -> None:
    r = Recipient("u1", "一号单位", (), (), "", (
        Endpoint("voice", "+f1"), Endpoint("webhook", "https://a/1", "cap"), Endpoint("webhook", "https://a/2")))
    warnings: list[str] = []
    assert factory().plan_targets(r, ["sms", "webhook"], warnings) == [
        ("voice", "+f1", ""), ("webhook", "https://a/1", "cap"), ("webhook", "https://a/2", "json")]
    assert factory().plan_targets(r, ["sms", "voice"], warnings) == [("voice", "+f1", "")]
    assert warnings == []
    assert factory(("voice",)).plan_targets(r, ["webhook"], warnings) == []
    assert warnings == ["channel webhook is not enabled; u1 not reached by it"]
