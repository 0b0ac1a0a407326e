"""Voice notifications through Alibaba Cloud's SingleCallByTts: an approved TTS template read out
to the callee, `PlayTimes` times, from our approved called-show number.

The TTS notification plays and hangs up: it collects no keypress (that needs the IVR product),
so units acknowledge by link or through the API. The call result comes back by VoiceReport push.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from channels.aliyun.client import AliyunApi, AliyunConfig
from channels.aliyun.errors import guarded_call
from channels.base import Capabilities, Destination, FailureReason, Message, Misconfigured, Permanent, SendResult

META_TTS_TEMPLATE = "aliyun_tts_template"  # TTS template code, e.g. TTS_123456789
META_TTS_PARAMS = "aliyun_tts_params"  # JSON object of the template's variables


def _utcnow() -> datetime:
    return datetime.now(UTC)


def called_number(address: str) -> str | None:
    """The number as the mainland network dials it: `139...` for a mobile, `0356...` for a
    landline with its area code; None for a number abroad (the product calls mainland numbers)."""
    if not address.startswith("+86") or not address[3:].isdigit():
        return None
    national = address[3:]
    return national if national.startswith("1") and len(national) == 11 else "0" + national


class AliyunVoice:
    """The `voice` channel through Aliyun; results arrive as VoiceReport pushes.

    Message.meta keys read: `aliyun_tts_template`, `aliyun_tts_params`.
    """

    name: str = "voice"
    capabilities: Capabilities = Capabilities(max_body_chars=500, receipts=True, acks=False)

    def __init__(self, config: AliyunConfig, *, api: AliyunApi | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        """Use `api` to share the SDK clients with the SMS channel; else build our own."""
        self.config = config
        self.api = api or AliyunApi(config)
        self._clock = clock

    def can_send(self, message: Message, dest: Destination) -> bool:
        """True for a mainland number and a message carrying a TTS template."""
        return called_number(dest.address) is not None and bool(message.meta.get(META_TTS_TEMPLATE))

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """SingleCallByTts with `OutId` = `key`; the CallId is the reference receipts name.

        Raises:
            Misconfigured: no called-show number configured.
            Permanent: no TTS template in the message, or not a mainland number.
            Transient, RateLimited, Permanent, Misconfigured: the classified API failure.
        """
        number = called_number(dest.address)
        code = message.meta.get(META_TTS_TEMPLATE)
        if number is None or not code:
            raise Permanent(FailureReason.CLIENT_ERROR,
                            "aliyun voice needs a mainland (+86) number and a TTS template mapping")
        if not self.config.called_show_number:
            raise Misconfigured(FailureReason.AUTH, "aliyun voice: no called_show_number configured")
        from alibabacloud_dyvmsapi20170525 import models as voice_models  # loaded with AliyunApi

        request = voice_models.SingleCallByTtsRequest(
            called_number=number, called_show_number=self.config.called_show_number, tts_code=code,
            tts_param=message.meta.get(META_TTS_PARAMS) or "{}", play_times=self.config.play_times,
            volume=self.config.volume, speed=self.config.speed, out_id=key,
        )
        client = self.api.voice()
        body = await guarded_call(lambda: client.single_call_by_tts_async(request), timeout)
        return SendResult(provider_ref=str(body.call_id), accepted_at=self._clock(), final=False)

    async def aclose(self) -> None:
        """Drop the (possibly shared) SDK clients."""
        await self.api.aclose()
