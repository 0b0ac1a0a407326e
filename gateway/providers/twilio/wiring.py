"""Twilio SMS and voice channels, against the real API or the local sandbox."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from twilio.base.exceptions import TwilioRestException

from channels.twilio import TwilioApi, TwilioConfig, TwilioSms, TwilioVoice
from gateway import logs
from gateway.dispatcher import ChannelSlot
from gateway.ratelimit import TokenBucket
from gateway.store.base import OutboxItem

if TYPE_CHECKING:
    from gateway.daemon import Gateway
    from gateway.providers.base import Provider

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
    gw.sandbox = sandbox
    gw.closers.append(sandbox.stop)
    log.warning("sandbox_started", url=sandbox.base_url, note="SMS and calls go to the local sandbox only")
    return sandbox.base_url, sid, token


def _credentials(gw: Gateway) -> tuple[str, str]:
    """From files when configured (so SIGHUP can pick up fixed ones), else the environment.

    Raises:
        ValueError: no credentials, or a file cannot be read.
    """
    cfg = gw.config.channels.twilio
    sid = os.environ.get("TWILIO_ACCOUNT_SID", "")
    token = os.environ.get("TWILIO_AUTH_TOKEN", "")
    try:
        if cfg.account_sid_file:
            sid = Path(cfg.account_sid_file).read_text().strip()
        if cfg.auth_token_file:
            token = Path(cfg.auth_token_file).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read Twilio credentials: {exc}") from exc
    if not sid or not token:
        raise ValueError("channels.twilio is enabled: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN "
                         "(or account_sid_file / auth_token_file)")
    return sid, token


def twilio_meta(base_url: str, item: OutboxItem) -> Mapping[str, str]:
    """Where Twilio posts the status callbacks and a call's keypress, for every SMS and voice
    delivery (also those a failover channel may hand to Twilio)."""
    return {"status_callback": f"{base_url}/v1/callbacks/twilio/status",
            "gather_action": f"{base_url}/v1/callbacks/twilio/voice/{item.id}"}


async def build_twilio(gw: Gateway, slots: dict[str, ChannelSlot],
                       providers: Sequence[Provider]) -> dict[str, ChannelSlot]:
    """Raises ValueError when real Twilio is enabled without credentials."""
    cfg = gw.config.channels.twilio
    if gw.config.sandbox.enabled:
        base_url, sid, token = await _start_sandbox(gw)
    else:
        sid, token = _credentials(gw)
        base_url = cfg.base_url or ""
    sms, voice = _make(gw, sid, token, base_url)
    await _warm_up(gw)
    return {
        "sms": ChannelSlot(sms, per_endpoint=_in_flight(gw, cfg.sms_rate), timeout=cfg.timeout,
                           bucket=TokenBucket(cfg.sms_rate)),
        "voice": ChannelSlot(voice, per_endpoint=_in_flight(gw, cfg.voice_rate), timeout=cfg.timeout,
                             bucket=TokenBucket(cfg.voice_rate)),
    }


def _make(gw: Gateway, sid: str, token: str, base_url: str) -> tuple[TwilioSms, TwilioVoice]:
    cfg = gw.config.channels.twilio
    logs.register_secret(token)
    gw.twilio_auth_token = token
    tc = TwilioConfig(account_sid=sid, auth_token=token, from_number=cfg.from_number, base_url=base_url or None,
                      status_callback=f"{gw.base_url}/v1/callbacks/twilio/status", voice=cfg.voice,
                      language=cfg.language)
    gw.twilio_config = tc
    api = TwilioApi(tc)
    gw.twilio_api = api
    return TwilioSms(tc, api=api), TwilioVoice(tc, api=api)


async def reload_twilio(gw: Gateway) -> None:
    """SIGHUP: re-read credential files and swap the adapters in place; the old client closes."""
    if gw.config.sandbox.enabled or "sms" not in gw.channels:
        return
    try:
        sid, token = _credentials(gw)
    except ValueError as exc:
        log.error("twilio_reload_rejected", error=str(exc))
        return
    old = gw.twilio_api
    sms, voice = _make(gw, sid, token, gw.config.channels.twilio.base_url or "")
    gw.channels["sms"].swap("twilio", sms)
    gw.channels["voice"].swap("twilio", voice)
    if old is not None:
        await old.aclose()
    log.info("twilio_credentials_reloaded")


async def _warm_up(gw: Gateway) -> None:
    """Fetch our own account once at start: it checks the credentials early and opens the
    HTTP session, so the first real send is not slowed by connection set-up (which would bunch
    it with the next one and break the paced rate at the provider)."""
    api, tc = gw.twilio_api, gw.twilio_config
    assert api is not None and tc is not None  # set by _make, which runs first
    try:
        async with asyncio.timeout(5):
            await api.client().api.v2010.accounts(tc.account_sid).fetch_async()
    except TwilioRestException as exc:
        if exc.status == 401:
            log.error("twilio_credentials_rejected", status=exc.status, code=exc.code,
                      note="SMS and voice will pause until the credentials are fixed (SIGHUP)")
    except Exception as exc:  # a warm-up only: sends classify their own errors later
        log.warning("twilio_warm_up_failed", error=type(exc).__name__)


def _in_flight(gw: Gateway, rate: float) -> int:
    """Claim only what the rate can send within a few seconds, so leases held while waiting
    for the token bucket never come near expiry."""
    return max(1, min(gw.config.dispatch.concurrency, int(rate * 5)))
