"""Twilio SMS and voice channels.

Wiring: build one `TwilioApi(config)` and pass it to both `TwilioSms` and `TwilioVoice`, so
they share one HTTP session; `aclose()` on either closes it (idempotent).
"""

from __future__ import annotations

from channels.twilio.client import GatewayHttp, TwilioApi, TwilioConfig, last_response_headers
from channels.twilio.errors import classify, classify_delivery_error_code, prefers_voice
from channels.twilio.inbound import validate_signature
from channels.twilio.sms import TwilioSms
from channels.twilio.voice import TwilioVoice, ack_twiml, build_twiml

__all__ = [
    "GatewayHttp",
    "TwilioApi",
    "TwilioConfig",
    "TwilioSms",
    "TwilioVoice",
    "ack_twiml",
    "build_twiml",
    "classify",
    "classify_delivery_error_code",
    "last_response_headers",
    "prefers_voice",
    "validate_signature",
]
