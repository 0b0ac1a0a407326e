"""Voice calls through Twilio's Calls API: the alert is spoken and "press 1" acknowledges it."""

from __future__ import annotations

from typing import Any

from twilio.twiml.voice_response import Gather, VoiceResponse

from channels.base import (
    Capabilities,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    SendResult,
)
from channels.twilio.client import TwilioConfig
from channels.twilio.common import TwilioChannelBase
from channels.twilio.errors import guarded_call

# Twilio caps inline TwiML at 4000 characters (twilio.md §2).
MAX_TWIML_CHARS = 4000
CALL_EVENTS = ("initiated", "ringing", "answered", "completed")
GOODBYE = "未收到按键，再见。"
CONFIRMED = "已确认，谢谢。"
REPROMPT = "未能识别按键。请按1确认收到。"



def build_twiml(text: str, gather_action: str, config: TwilioConfig) -> str:
    """TwiML that speaks `text` `say_loop` times inside a one-digit Gather, then says goodbye.

    Any key ends the Gather and Twilio POSTs `Digits` to `gather_action`; with no key the call
    falls through to the goodbye (twilio.md §7).
    """
    response = VoiceResponse()
    gather = Gather(num_digits=1, action=gather_action, method="POST", timeout=config.gather_timeout)
    gather.say(text, voice=config.voice, language=config.language, loop=config.say_loop)
    response.append(gather)
    response.say(GOODBYE, voice=config.voice, language=config.language)
    return str(response)


def ack_twiml(confirmed: bool, config: TwilioConfig | None = None) -> str:
    """The reply to the Gather action: a thank-you and hang-up, or a re-prompt.

    The re-prompt's Gather has no `action`, so Twilio posts the next key to the URL that served
    this reply, i.e. the same ack endpoint. `config` supplies voice, language and timeout.
    """
    voice = config.voice if config else "Polly.Zhiyu"
    language = config.language if config else "cmn-CN"
    response = VoiceResponse()
    if confirmed:
        response.say(CONFIRMED, voice=voice, language=language)
        response.hangup()
        return str(response)
    gather = Gather(num_digits=1, method="POST", timeout=config.gather_timeout if config else 8)
    gather.say(REPROMPT, voice=voice, language=language)
    response.append(gather)
    response.say(GOODBYE, voice=voice, language=language)
    return str(response)


class TwilioVoice(TwilioChannelBase):
    """The `voice` channel: one outbound call per send; call progress arrives on the callback.

    Message.meta keys read: `gather_action` (required: the URL the keypress is posted to) and
    `status_callback` (overrides `TwilioConfig.status_callback`).
    """

    name: str = "voice"
    capabilities: Capabilities = Capabilities(receipts=True, acks=True)


    async def send(
        self,
        message: Message,
        dest: Destination,
        *,
        key: str,
        timeout: float,  # the Channel protocol fixes this signature
    ) -> SendResult:
        """Place one call speaking `message.text`; `final=False`: the outcome is a callback.

        Raises:
            Misconfigured: `gather_action` is missing from message.meta (every call would lack acks).
            Permanent: the TwiML exceeds Twilio's 4000-character limit.
            Transient, RateLimited, Permanent, Misconfigured: a classified API failure.
        """
        action = message.meta.get("gather_action")
        if not action:
            raise Misconfigured(FailureReason.CLIENT_ERROR, "voice message has no meta['gather_action']")
        twiml = build_twiml(message.text, action, self.config)
        if len(twiml) > MAX_TWIML_CHARS:
            raise Permanent(FailureReason.CLIENT_ERROR, f"voice TwiML is {len(twiml)} chars (max 4000)")
        client = self._api.client()
        kwargs: dict[str, Any] = {
            "to": dest.address,
            "from_": self.config.from_number,
            "twiml": twiml,
            "timeout": self.config.call_timeout,
        }
        callback = message.meta.get("status_callback") or self.config.status_callback
        if callback:
            kwargs["status_callback"] = callback
            kwargs["status_callback_event"] = list(CALL_EVENTS)
        created = await guarded_call(lambda: client.calls.create_async(**kwargs), timeout)
        return SendResult(provider_ref=created.sid, accepted_at=self._clock(), final=False)
