"""Webhook channel: signed HTTP POSTs per the Standard Webhooks spec.

One keep-alive aiohttp session serves every endpoint. Each endpoint origin gets its own
concurrency slots and circuit breaker, so one slow or dead receiver never holds up the others
(design.md section 4, "Isolation"). The adapter classifies failures and never retries: the
outbox does that.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from channels.base import (
    Capabilities,
    Deferred,
    DeliveryError,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    RateLimited,
    SendResult,
    Transient,
)
from channels.signing import ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, Signer

# Headers a receiver may use to name its own record of the delivery; the first one present
# becomes SendResult.provider_ref (bounded so a hostile receiver cannot bloat our rows).
_RESPONSE_ID_HEADERS = ("x-request-id", "request-id", "x-message-id")
_MAX_PROVIDER_REF = 200
# A receiver's response body is read (to keep the connection reusable) but never needed; past
# this much we stop reading and let aiohttp drop the connection instead.
_MAX_DRAIN_BYTES = 64 * 1024
# While a half-open circuit's probe is in flight, other sends to the origin wait this long.
_PROBE_WAIT = 1.0
# 408 Request Timeout and 425 Too Early say "try again" although they are 4xx (RFC 9110, 8470).
_RETRYABLE_4XX = frozenset({408, 425})


@dataclass(frozen=True, slots=True)
class _Target:
    url: URL
    origin: str
    endpoint: str  # origin + path: the unit a 410 Gone retires


@dataclass(slots=True)
class _Circuit:
    failures: int = 0
    open_until: float | None = None
    probing: bool = False


class _Breaker:
    """Per-origin circuit breaker: closed -> open (cooldown) -> half-open (one probe)."""

    def __init__(self, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}

    def admit(self, origin: str) -> bool:
        """Let a request through; True when it is the half-open probe.

        Raises:
            Deferred: the circuit is open, or half-open with its probe still in flight (nothing
                is sent, so the outbox does not count an attempt).
        """
        circuit = self._circuits.setdefault(origin, _Circuit())
        if circuit.open_until is None:
            return False
        remaining = circuit.open_until - self._clock()
        if remaining > 0:
            raise Deferred(FailureReason.CONNECTION, f"circuit open for {origin}", retry_after=remaining)
        if circuit.probing:
            raise Deferred(FailureReason.CONNECTION, f"circuit half-open for {origin}, probe in flight",
                           retry_after=_PROBE_WAIT)
        circuit.probing = True
        return True

    def record(self, origin: str, probe: bool, alive: bool | None) -> None:
        """Feed one request's outcome back; `alive=None` (cancelled, unusable) only frees the probe."""
        circuit = self._circuits[origin]
        if alive:
            # Any answer proving the endpoint alive closes the circuit, even a late one.
            self._circuits[origin] = _Circuit()
        elif alive is None:
            if probe:
                circuit.probing = False  # let the next send probe instead
        elif probe:
            circuit.failures += 1
            circuit.probing = False
            circuit.open_until = self._clock() + self._cooldown
        else:
            circuit.failures += 1
            if circuit.open_until is None and circuit.failures >= self._threshold:
                circuit.open_until = self._clock() + self._cooldown

    @property
    def cooldown(self) -> float:
        return self._cooldown

    def known(self) -> int:
        return len(self._circuits)

    def open_origins(self) -> list[str]:
        return sorted(o for o, c in self._circuits.items() if c.open_until is not None)


class WebhookChannel:
    """Deliver messages as Standard Webhooks-signed JSON POSTs to a URL per destination."""

    name = "webhook"
    capabilities = Capabilities(max_body_chars=1_000_000, receipts=False, acks=False)

    def __init__(
        self,
        secret: str,
        *,
        per_endpoint_concurrency: int = 8,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        user_agent: str = "zezhou-gateway",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the channel; no connection is opened until the first send.

        `clock` (monotonic seconds) drives only the circuit breaker; timestamps on the wire
        come from the wall clock.

        Raises:
            ValueError: the secret is malformed, or a limit is out of range.
        """
        self._signer = Signer(secret)  # a bad secret fails at start-up, not on the first emergency
        if per_endpoint_concurrency < 1:
            raise ValueError("per_endpoint_concurrency must be at least 1")
        if breaker_threshold < 1:
            raise ValueError("breaker_threshold must be at least 1")
        if breaker_cooldown < 0:
            raise ValueError("breaker_cooldown must not be negative")
        self._concurrency = per_endpoint_concurrency
        self._user_agent = user_agent
        self._breaker = _Breaker(breaker_threshold, breaker_cooldown, clock)
        self._gone: set[str] = set()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def endpoint_key(self, dest: Destination) -> str:
        """Return the destination's origin (`scheme://host:port`), the unit of isolation.

        An unusable address is returned unchanged so grouping never fails; `send` rejects it.
        """
        try:
            return _parse_target(dest.address).origin
        except Permanent:
            return dest.address

    def is_up(self) -> bool:
        """False when every origin seen so far has an open circuit; True if none seen yet."""
        known = self._breaker.known()
        return known == 0 or len(self._breaker.open_origins()) < known

    def open_circuits(self) -> list[str]:
        """Origins whose circuit is open or half-open (not yet proven healthy), sorted."""
        return self._breaker.open_origins()

    # `timeout` is the Channel protocol's parameter name, hence the ASYNC109 exemption.
    async def send(
        self,
        message: Message,
        dest: Destination,
        *,
        key: str,
        timeout: float,
    ) -> SendResult:
        """POST the message to `dest.address`, signed, with `webhook-id` = `key`.

        Raises:
            Permanent: invalid URL (INVALID_RECIPIENT), 401/403 (AUTH), other 4xx (CLIENT_ERROR).
            Misconfigured: the endpoint answered 410 Gone, now or earlier.
            RateLimited: 429, with `retry_after` from the Retry-After header when given.
            Transient: 408/425/5xx (SERVER_ERROR), timeout (TIMEOUT), network failure (CONNECTION).
            Deferred: the origin's circuit is open (CONNECTION); nothing was sent.
            RuntimeError: called after `aclose()`.
        """
        if self._closed:
            raise RuntimeError("webhook channel is closed")
        target = _parse_target(dest.address)
        if target.endpoint in self._gone:
            raise Misconfigured(FailureReason.CLIENT_ERROR, f"endpoint gone (410 earlier) at {target.origin}")
        # Encoded before admission: an encoding bug must not strand a half-open probe slot.
        body = _encode_body(message)
        headers = self._headers(key, body, message.meta.get("content_type", "application/json"))
        probe = self._breaker.admit(target.origin)
        alive: bool | None = None  # the breaker's verdict; None = no evidence either way
        try:
            status, response_headers = await self._post(target, body, headers, timeout)
            result = self._classify(target, status, response_headers)
            alive = True
            return result
        except RateLimited:
            alive = True  # it answered: alive, just busy; the outbox honours Retry-After
            raise
        except Transient as exc:
            # Only silence (timeouts, refused connections) counts towards opening the circuit: a
            # 5xx answered, and the outbox's backoff already spaces the retries to it.
            alive = None if exc.reason is FailureReason.SERVER_ERROR else False
            if probe and alive is False:
                # A failed probe goes to the back of the line: the next probe is another
                # delivery's, so one unlucky message does not spend all its attempts probing.
                raise Transient(exc.reason, exc.detail,
                                retry_after=self._breaker.cooldown + _PROBE_WAIT) from None
            raise
        except DeliveryError as exc:
            # A 4xx still proves the endpoint is up; a URL aiohttp refused proves nothing.
            alive = None if exc.reason is FailureReason.INVALID_RECIPIENT else True
            raise
        finally:
            self._breaker.record(target.origin, probe, alive)

    async def aclose(self) -> None:
        """Close the HTTP session and its pooled connections; safe to call twice."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _headers(self, key: str, body: bytes, content_type: str) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            ID_HEADER: key,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: self._signer.sign(key, timestamp, body),
            "content-type": content_type,
            "user-agent": self._user_agent,
        }

    def _session_for_loop(self) -> aiohttp.ClientSession:
        # Created lazily so it binds to the loop that actually runs the sends.
        if self._session is None:
            # No global cap (limit=0): each origin gets its own `per_endpoint_concurrency`
            # connections (limit_per_host), so one origin never starves another of the pool.
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=self._concurrency)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # A receiver's cookies are never sent back (nor to anyone else): each POST stands alone.
                cookie_jar=aiohttp.DummyCookieJar(),
                # Deadlines come from each send's asyncio.timeout, not a session-wide default.
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def _post(
        self, target: _Target, body: bytes, headers: Mapping[str, str], deadline_s: float
    ) -> tuple[int, Mapping[str, str]]:
        """Do the request under one deadline, queueing included; return status and headers.

        Raises:
            Transient: timeout or network failure.
            Permanent: aiohttp rejected the URL.
        """
        session = self._session_for_loop()
        # Redirects are not followed: a POST turned GET loses the body, and a receiver that
        # moved should be reconfigured, not chased.
        # The per-origin slots are the connector's (limit_per_host), and waiting for one counts
        # against the deadline: a send queued behind a slow receiver must still give up on time.
        try:
            async with (
                asyncio.timeout(deadline_s),
                session.post(target.url, data=body, headers=headers, allow_redirects=False) as resp,
            ):
                await _drain(resp)
                return resp.status, resp.headers
        except TimeoutError:
            raise Transient(
                FailureReason.TIMEOUT, f"no answer within {deadline_s:g}s from {target.origin}"
            ) from None
        except aiohttp.InvalidURL:
            raise Permanent(FailureReason.INVALID_RECIPIENT, "invalid webhook URL") from None
        except aiohttp.ClientConnectorError as exc:
            raise Transient(
                FailureReason.CONNECTION, f"cannot connect to {target.origin}: {exc.strerror or 'error'}"
            ) from None
        except aiohttp.ClientError as exc:
            raise Transient(
                FailureReason.CONNECTION, f"connection to {target.origin} failed: {type(exc).__name__}"
            ) from None

    def _classify(self, target: _Target, status: int, headers: Mapping[str, str]) -> SendResult:
        """Map an HTTP status to a result.

        Raises:
            the DeliveryError matching the status (see `send`).
        """
        where = target.origin
        if 200 <= status < 300:
            return SendResult(provider_ref=_provider_ref(headers), accepted_at=datetime.now(UTC), final=True)
        if status == 429:
            retry_after = _retry_after(headers.get("retry-after"))
            raise RateLimited(FailureReason.RATE_LIMITED, f"HTTP 429 from {where}", retry_after=retry_after)
        if status >= 500 or status in _RETRYABLE_4XX:
            retry_after = _retry_after(headers.get("retry-after"))
            raise Transient(
                FailureReason.SERVER_ERROR, f"HTTP {status} from {where}", retry_after=retry_after
            )
        if status == 410:
            self._gone.add(target.endpoint)
            raise Misconfigured(FailureReason.CLIENT_ERROR, f"endpoint gone (HTTP 410) at {where}")
        if status in (401, 403):
            raise Permanent(FailureReason.AUTH, f"HTTP {status} from {where}: signature or access rejected")
        if 300 <= status < 400:
            raise Permanent(FailureReason.CLIENT_ERROR, f"HTTP {status} redirect from {where} not followed")
        raise Permanent(FailureReason.CLIENT_ERROR, f"HTTP {status} from {where}")


@functools.lru_cache(maxsize=4096)  # a roster has a few hundred URLs; each send parsed its own
def _parse_target(address: str) -> _Target:
    """Split a webhook URL into the keys the channel isolates on.

    Raises:
        Permanent: INVALID_RECIPIENT when the address is not an absolute http(s) URL.
    """
    try:
        url = URL(address)
        host, port = url.raw_host, url.port
    except (ValueError, TypeError):
        raise Permanent(FailureReason.INVALID_RECIPIENT, "invalid webhook URL") from None
    if url.scheme not in ("http", "https") or not host or port is None:
        raise Permanent(FailureReason.INVALID_RECIPIENT, "webhook URL must be absolute http(s)")
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    origin = f"{url.scheme}://{host}:{port}"
    # The path is kept out of every `detail`: many services put a token in it.
    return _Target(url=url, origin=origin, endpoint=origin + (url.raw_path or "/"))


def _encode_body(message: Message) -> bytes:
    # The gateway serialises each event once and hands the same text to every unit.
    pre_serialised = message.meta.get("body")
    if pre_serialised is not None:
        return pre_serialised.encode()
    return json.dumps(message.payload, ensure_ascii=False, separators=(",", ":")).encode()


async def _drain(resp: aiohttp.ClientResponse) -> None:
    # Reading the (small) body lets the connection go back to the keep-alive pool.
    remaining = _MAX_DRAIN_BYTES
    while remaining > 0:
        chunk = await resp.content.read(remaining)
        if not chunk:
            return
        remaining -= len(chunk)


def _provider_ref(headers: Mapping[str, str]) -> str | None:
    for name in _RESPONSE_ID_HEADERS:
        value = headers.get(name)
        if value:
            return value[:_MAX_PROVIDER_REF]
    return None


def _retry_after(value: str | None) -> float | None:
    """Parse Retry-After: delta-seconds or an HTTP-date (RFC 9110 section 10.2.3); None if bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" dates come back naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
