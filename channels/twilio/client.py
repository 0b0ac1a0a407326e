"""The Twilio SDK client, built once per process inside the running loop.

Retries stay off here on purpose: the SDK's `max_retries` retries any 5xx, POST included,
which can duplicate an SMS or a call (twilio.md §2). The gateway's outbox is the only retry layer.
"""

from __future__ import annotations

import base64
import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

# Headers of the last Twilio API response seen by *this task*: the SDK's exceptions carry no
# headers, so this is the only way to read Retry-After on a 429 (twilio.md §4). A ContextVar
# keeps concurrent sends from seeing each other's headers.
last_response_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "twilio_last_response_headers", default=None
)


@dataclass(frozen=True, slots=True)
class TwilioConfig:
    """Account, sender and voice settings shared by the SMS and voice channels.

    `base_url` (scheme://host:port) points the SDK at another server, such as the sandbox;
    `status_callback` is the full URL Twilio posts receipts to.

    Raises:
        ValueError: a numeric setting is out of range.
    """

    account_sid: str
    auth_token: str = field(repr=False)  # never in logs or reprs
    from_number: str
    base_url: str | None = None
    status_callback: str | None = None
    voice: str = "Polly.Zhiyu"
    language: str = "cmn-CN"
    say_loop: int = 2
    gather_timeout: int = 8
    call_timeout: int = 30

    def __post_init__(self) -> None:
        # loop=0 would repeat the alert until the callee hangs up (twilio.md §7).
        if self.say_loop < 1:
            raise ValueError("say_loop must be >= 1")
        if self.gather_timeout < 1 or self.call_timeout < 1:
            raise ValueError("gather_timeout and call_timeout must be >= 1 second")


class GatewayHttp(AsyncTwilioHttpClient):  # type: ignore[misc]  # the SDK is untyped
    """The SDK's aiohttp client with a base-URL override and response-header capture.

    The override swaps scheme and host on every request, so a region or edge (argument or
    TWILIO_REGION/TWILIO_EDGE) cannot send test traffic to a rewritten host (twilio.md §1).
    There is no `max_retries` parameter: see the module docstring.

    Raises:
        RuntimeError: built outside a running event loop.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        timeout: float | None = None,
        proxy_url: str | None = None,
    ) -> None:
        super().__init__(timeout=timeout, proxy_url=proxy_url)
        self._base = urlsplit(base_url) if base_url else None

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # the SDK's signature
        allow_redirects: bool = False,
    ) -> Any:
        """Send one request; returns the SDK's `Response`.

        Raises:
            aiohttp.ClientError: connection-level failure (not a TwilioException).
        """
        # A connection error must not leave the previous response's Retry-After behind.
        last_response_headers.set(None)
        if self._base is not None:
            parts = urlsplit(url)
            url = urlunsplit((self._base.scheme, self._base.netloc, parts.path, parts.query, ""))
        headers = dict(headers or {})
        if auth is not None:
            # aiohttp 3.14 deprecates BasicAuth and `auth=`; a plain header does the same and
            # keeps the SDK working under -W error and on aiohttp 4.
            headers["Authorization"] = _basic_auth(*auth)
        response = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        last_response_headers.set(response.headers)
        return response


def _basic_auth(login: str, password: str) -> str:
    token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


class TwilioApi:
    """One lazily built SDK client (and its HTTP session) shared by the Twilio channels.

    The session is created on first use because aiohttp needs a running loop; it is bound to
    that loop. `aclose()` is idempotent, so each channel may call it on shutdown.
    """

    def __init__(self, config: TwilioConfig) -> None:
        """Remember the config; nothing is connected until the first send."""
        self.config = config
        self._http: GatewayHttp | None = None
        self._client: Any = None

    def client(self) -> Any:
        """Return the shared `twilio.rest.Client`, building it on first call.

        Building is synchronous, so two concurrent first sends cannot race within one loop.

        Raises:
            RuntimeError: called outside a running event loop.
        """
        if self._client is None:
            http = GatewayHttp(self.config.base_url)
            self._client = Client(self.config.account_sid, self.config.auth_token, http_client=http)
            self._http = http
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP session; a later send would open a new one."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()
