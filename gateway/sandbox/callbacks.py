"""Signed webhook requests from the sandbox to the gateway: status callbacks, Gather actions."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator
from yarl import URL

from gateway.sandbox.stats import SandboxStats

SIGNATURE_HEADER = "X-Twilio-Signature"


def sign(auth_token: str, url: str, params: dict[str, str]) -> str:
    """X-Twilio-Signature over `url` (exactly as called) and every form field (twilio.md §6)."""
    return str(RequestValidator(auth_token).compute_signature(url, params))


@dataclass
class CallbackRecord:
    """One webhook the sandbox made, kept for tests: what was sent and how it was answered."""

    kind: str  # "status", "gather" or "twiml"
    sid: str
    url: str
    method: str
    params: dict[str, str]
    signature: str
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    response_text: str = ""
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        """True when the receiver answered 2xx."""
        return self.status is not None and 200 <= self.status < 300


class CallbackPoster:
    """Posts signed, form-encoded webhooks; retries connection errors only.

    Twilio does not retry a webhook that got an HTTP answer, whatever its status, so neither
    do we; a refused connection or a timeout is retried `retries` times with a short backoff.
    """

    def __init__(self, stats: SandboxStats, keep: int = 10_000) -> None:
        """No session until `open()`: aiohttp needs the running loop."""
        self.records: list[CallbackRecord] = []
        self._stats = stats
        self._keep = keep
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        """Create the HTTP session."""
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        """Close the HTTP session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def deliver(
        self,
        *,
        kind: str,
        sid: str,
        url: str,
        params: dict[str, str],
        auth_token: str,
        retries: int,
        timeout_s: float,
        method: str = "POST",
    ) -> CallbackRecord:
        """Send one webhook and return its record (never raises for network failures).

        GET puts the params in the query string and signs the URL alone, as Twilio does.

        Raises:
            RuntimeError: the poster is not open.
        """
        if self._session is None:
            raise RuntimeError("CallbackPoster is not open")
        method = method.upper()
        if method == "GET":
            url = url + ("&" if "?" in url else "?") + urlencode(params)
        # Sign the URL exactly as it goes on the wire (percent-encoded), which is what the
        # receiver sees in request.path_qs; then send that string without re-quoting it.
        url = str(URL(url))
        body = {} if method == "GET" else params
        record = CallbackRecord(kind, sid, url, method, dict(params), sign(auth_token, url, body))
        self._remember(record)
        client_timeout = aiohttp.ClientTimeout(total=timeout_s)
        headers = {SIGNATURE_HEADER: record.signature, "User-Agent": "TwilioProxy/1.1"}
        for attempt in range(retries + 1):
            record.attempts = attempt + 1
            try:
                async with self._session.request(
                    method, URL(url, encoded=True), data=body or None, headers=headers, timeout=client_timeout
                ) as resp:
                    record.status = resp.status
                    record.response_text = await resp.text()
                    record.error = None
                    break
            except (aiohttp.ClientError, TimeoutError) as exc:
                record.error = f"{type(exc).__name__}: {exc}"
                if attempt < retries:
                    await asyncio.sleep(0.05 * 2**attempt)
        self._stats.callback(record.ok)
        return record

    def _remember(self, record: CallbackRecord) -> None:
        self.records.append(record)
        if len(self.records) > self._keep:
            del self.records[: len(self.records) - self._keep]
