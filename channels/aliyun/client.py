"""Alibaba Cloud SDK clients for SMS (Dysmsapi) and voice (Dyvmsapi), built once per process.

The SDK's own retries stay off (no `retry_options` in the config): a retried SendSms or
SingleCallByTts can duplicate the message or the call; the gateway's outbox is the only retry layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

# Public endpoints (https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-endpoint,
# https://help.aliyun.com/zh/vms/developer-reference/api-dyvmsapi-2017-05-25-endpoint).
SMS_ENDPOINT = "https://dysmsapi.aliyuncs.com"
VOICE_ENDPOINT = "https://dyvmsapi.aliyuncs.com"


@dataclass(frozen=True, slots=True)
class AliyunConfig:
    """Credentials and settings shared by the Aliyun SMS and voice channels.

    `endpoint`/`voice_endpoint` are URLs (`http://127.0.0.1:9000` points the SDK at the local
    fake); the scheme picks the protocol. `sign_name` is the registered SMS signature without
    【】 (the platform adds them); `called_show_number` the approved caller id for voice.

    Raises:
        ValueError: an endpoint is not an http(s) URL, or a numeric setting is out of range.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)  # never in logs or reprs
    sign_name: str = "泽州县人民政府"
    endpoint: str = SMS_ENDPOINT
    voice_endpoint: str = VOICE_ENDPOINT
    called_show_number: str | None = None
    play_times: int = 2
    volume: int = 100
    speed: int = 0
    connect_timeout_ms: int = 5000
    read_timeout_ms: int = 10000

    def __post_init__(self) -> None:
        for url in (self.endpoint, self.voice_endpoint):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"not an http(s) endpoint URL: {url!r}")
        # PlayTimes 1..3, Volume 0..100, Speed -500..500 (SingleCallByTts API reference:
        # https://help.aliyun.com/zh/vms/developer-reference/api-dyvmsapi-2017-05-25-singlecallbytts)
        if not 1 <= self.play_times <= 3:
            raise ValueError("play_times must be 1..3")
        if not 0 <= self.volume <= 100 or not -500 <= self.speed <= 500:
            raise ValueError("volume must be 0..100 and speed -500..500")


def _openapi_config(cfg: AliyunConfig, url: str) -> Any:
    from alibabacloud_tea_openapi import models as open_api_models

    parts = urlsplit(url)
    return open_api_models.Config(
        access_key_id=cfg.access_key_id,
        access_key_secret=cfg.access_key_secret,
        endpoint=parts.netloc,
        protocol=parts.scheme,
        connect_timeout=cfg.connect_timeout_ms,
        read_timeout=cfg.read_timeout_ms,
    )


class AliyunApi:
    """Lazily built SDK clients shared by the Aliyun channels.

    The SDK opens one aiohttp session per request (darabonba's `async_do_action`), so there is
    nothing to close; `aclose()` only drops the clients so that a later call rebuilds them.
    """

    def __init__(self, config: AliyunConfig) -> None:
        """Remember the config; nothing is connected until the first call."""
        self.config = config
        self._sms: Any = None
        self._voice: Any = None
        # The SDK is imported here, not when the module is: it is about a fifth of the daemon's
        # import time, which a gateway without Aliyun should not pay (every instance of a cluster
        # starting together pays it in CPU); one with Aliyun pays it while wiring, not on a send.
        from alibabacloud_dysmsapi20170525.client import Client as SmsClient
        from alibabacloud_dyvmsapi20170525.client import Client as VoiceClient

        self._classes: tuple[Any, Any] = (SmsClient, VoiceClient)

    def sms(self) -> Any:
        """The Dysmsapi client (SendSms, QuerySendDetails)."""
        if self._sms is None:
            self._sms = self._classes[0](_openapi_config(self.config, self.config.endpoint))
        return self._sms

    def voice(self) -> Any:
        """The Dyvmsapi client (SingleCallByTts)."""
        if self._voice is None:
            self._voice = self._classes[1](_openapi_config(self.config, self.config.voice_endpoint))
        return self._voice

    async def aclose(self) -> None:
        """Forget the clients (idempotent)."""
        self._sms = self._voice = None
