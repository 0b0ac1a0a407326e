"""Twilio SMS and voice channels, against the real API or the local sandbox."""

from __future__ import annotations

import os
import secrets
from typing import TYPE_CHECKING

from channels.twilio import TwilioApi, TwilioConfig, TwilioSms, TwilioVoice
from gateway import logs
from gateway.dispatcher import ChannelSlot
from gateway.ratelimit import TokenBucket

if TYPE_CHECKING:
    from gateway.daemon import Gateway

log = logs.get("gateway.twilio")


async def _start_sandbox(gw: Gateway) -> tuple[str, str, str]:
    """Start the embedded sandbox; returns (base_url, account_sid, auth_token)."""
    from gateway.sandbox import Sandbox, SandboxConfig

    sc = gw.config.sandbox
    sid = "AC" + secrets.token_hex(16)
    token = secrets.token_hex(16)
    sandbox = Sandbox(SandboxConfig(account_sid=sid, auth_token=token, auto_press=sc.auto_press,
                                    callback_delay=sc.callback_delay))
    await sandbox.start("127.0.0.1", sc.port)
    gw.extras["sandbox"] = sandbox
    gw.extras.setdefault("closers", []).append(sandbox.stop)
    log.warning("sandbox_started", url=sandbox.base_url, note="SMS and calls go to the local sandbox only")
    return sandbox.base_url, sid, token


async def build_twilio(gw: Gateway) -> dict[str, ChannelSlot]:
    """Raises ValueError when real Twilio is enabled without credentials in the environment."""
    cfg = gw.config.channels.twilio
    if gw.config.sandbox.enabled:
        base_url, sid, token = await _start_sandbox(gw)
    else:
        sid = os.environ.get("TWILIO_ACCOUNT_SID", "")
        token = os.environ.get("TWILIO_AUTH_TOKEN", "")
        base_url = cfg.base_url or ""
        if not sid or not token:
            raise ValueError("channels.twilio is enabled: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    logs.register_secret(token)
    gw.extras["twilio_auth_token"] = token
    tc = TwilioConfig(account_sid=sid, auth_token=token, from_number=cfg.from_number, base_url=base_url or None,
                      status_callback=f"{gw.base_url}/v1/callbacks/twilio/status", voice=cfg.voice,
                      language=cfg.language)
    gw.extras["twilio_config"] = tc
    api = TwilioApi(tc)
    gw.extras.setdefault("closers", []).append(api.aclose)
    return {
        "sms": ChannelSlot(TwilioSms(tc, api=api), per_endpoint=_in_flight(gw, cfg.sms_rate),
                           timeout=cfg.timeout, bucket=TokenBucket(cfg.sms_rate)),
        "voice": ChannelSlot(TwilioVoice(tc, api=api), per_endpoint=_in_flight(gw, cfg.voice_rate),
                             timeout=cfg.timeout, bucket=TokenBucket(cfg.voice_rate)),
    }


def _in_flight(gw: Gateway, rate: float) -> int:
    """Claim only what the rate can send within a few seconds, so leases held while waiting
    for the token bucket never come near expiry."""
    return max(1, min(gw.config.dispatch.concurrency, int(rate * 5)))
