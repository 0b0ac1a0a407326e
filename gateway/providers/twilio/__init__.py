"""Twilio SMS and voice: wiring, credentials reload, the sandbox, signed callbacks, status
callbacks read as receipts."""

from gateway.providers.base import Provider
from gateway.providers.twilio.wiring import build_twilio, twilio_meta

PROVIDER = Provider(
    name="twilio", kinds=("sms", "voice"), enabled=lambda cfg: cfg.channels.twilio.enabled,
    rate=lambda cfg, kind: cfg.channels.twilio.sms_rate if kind == "sms" else cfg.channels.twilio.voice_rate,
    timeout=lambda cfg: cfg.channels.twilio.timeout, default_weight=10, bare_refs=True,
    build=build_twilio, meta=twilio_meta,
)
