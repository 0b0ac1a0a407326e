"""What the Twilio SMS and voice channels share: configuration, the (shared) API client, a clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from channels.twilio.client import TwilioApi, TwilioConfig


def utcnow() -> datetime:
    return datetime.now(UTC)


class TwilioChannelBase:
    """Holds the config and the Twilio API handle; subclasses implement `send`."""

    def __init__(
        self,
        config: TwilioConfig,
        *,
        api: TwilioApi | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """Pass one `api` to both channels so SMS and voice share one HTTP session."""
        self.config = config
        self._api = api or TwilioApi(config)
        self._clock = clock

    async def aclose(self) -> None:
        """Close the (possibly shared) Twilio HTTP session."""
        await self._api.aclose()
