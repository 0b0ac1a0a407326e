"""SMS through Twilio's Messages API."""

from __future__ import annotations

from typing import Any

from channels.base import Capabilities, Destination, Message, SendResult
from channels.twilio.common import TwilioChannelBase
from channels.twilio.errors import guarded_call

# Twilio rejects longer bodies with 21617 (twilio.md §8).
MAX_BODY_CHARS = 1600



class TwilioSms(TwilioChannelBase):
    """The `sms` channel: one Twilio message per send; receipts arrive on the status callback.

    Message.meta keys read: `status_callback` (overrides `TwilioConfig.status_callback`).
    """

    name: str = "sms"
    capabilities: Capabilities = Capabilities(max_body_chars=MAX_BODY_CHARS, receipts=True, acks=True)


    async def send(
        self,
        message: Message,
        dest: Destination,
        *,
        key: str,
        timeout: float,  # the Channel protocol fixes this signature
    ) -> SendResult:
        """Create one Twilio message; `final=False` because a receipt is still to come.

        `key` is not sent: the Messages API has no idempotency key, so a retry after an
        ambiguous failure (5xx, timeout) can duplicate the SMS; the outbox bounds that.

        Raises:
            Transient, RateLimited, Permanent, Misconfigured: a classified failure.
        """
        client = self._api.client()
        callback = message.meta.get("status_callback") or self.config.status_callback
        kwargs: dict[str, Any] = {"to": dest.address, "from_": self.config.from_number, "body": message.text}
        if callback:
            kwargs["status_callback"] = callback
        created = await guarded_call(lambda: client.messages.create_async(**kwargs), timeout)
        return SendResult(
            provider_ref=created.sid,
            accepted_at=self._clock(),
            segments=_segments(created.num_segments),
            final=False,
        )


def _segments(value: object) -> int:
    # Twilio sends num_segments as a string ("2"); a missing or odd value counts as one.
    try:
        return max(1, int(str(value))) if value is not None else 1
    except ValueError:
        return 1
