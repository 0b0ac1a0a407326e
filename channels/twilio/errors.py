"""Map Twilio failures onto the gateway's closed failure classes (twilio.md §4).

Error code references: https://www.twilio.com/docs/api/errors/<code>
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from twilio.base.exceptions import TwilioException

from channels.base import DeliveryError, FailureReason, Misconfigured, Permanent, RateLimited, Transient
from channels.twilio.client import last_response_headers

# Exceptions a send may raise that classify() understands; anything else is a bug and is
# left to the dispatcher. JSONDecodeError: a 2xx whose body is not JSON (a broken proxy).
SEND_ERRORS: tuple[type[BaseException], ...] = (
    TwilioException,
    aiohttp.ClientError,
    TimeoutError,
    json.JSONDecodeError,
)

# 20003 authenticate; 21606 From is not an SMS-capable number of ours; 21608 trial account,
# To not verified; 21408 SMS geo permission; 21215 call geo permission; 21216 call blocked.
AUTH_CODES = frozenset({20003, 21606, 21608, 21408, 21215, 21216})
# 21211 invalid To; 21614 not a mobile number; 21610 recipient sent STOP; 21612 unroutable;
# 21635 landline. Retrying SMS cannot help; the gateway falls back to voice or another contact.
RECIPIENT_CODES = frozenset({21211, 21614, 21610, 21612, 21635})
RATE_LIMIT_CODE = 20429

# Delivery ErrorCodes (failed/undelivered receipts) where a later retry may succeed:
# 30001 queue overflow, 30003 handset unreachable, 30008 unknown error.
_RETRYABLE_DELIVERY = {
    "30001": FailureReason.RATE_LIMITED,
    "30003": FailureReason.CONNECTION,
    "30008": FailureReason.OTHER,
}
_FINAL_DELIVERY = {
    "30002": FailureReason.AUTH,  # account suspended
    "30004": FailureReason.INVALID_RECIPIENT,  # message blocked (opted out, blocklist)
    "30005": FailureReason.INVALID_RECIPIENT,  # unknown or inactive handset
    "30006": FailureReason.INVALID_RECIPIENT,  # landline or unreachable carrier: use voice
    "30007": FailureReason.CLIENT_ERROR,  # carrier spam filter: permanent for this text
}
# Receipts whose number can probably still be reached by a voice call.
VOICE_FALLBACK_CODES = frozenset({"30003", "30006"})


async def guarded_call(call: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    """Await one SDK call for at most `seconds` and return its result.

    The SDK's own timeout setting is ignored by its async client (twilio.md §2), hence
    asyncio.timeout here.

    Raises:
        DeliveryError: the classified failure (Transient, RateLimited, Permanent, Misconfigured).
    """
    try:
        async with asyncio.timeout(seconds):
            return await call()
    except SEND_ERRORS as exc:
        raise classify(exc) from exc


def classify(exc: BaseException) -> DeliveryError:
    """Return the DeliveryError for a failed Twilio API call (never raises).

    429/20429 -> RateLimited (retry_after from the captured Retry-After header, if any);
    5xx, connection errors and timeouts -> Transient; auth/geo/sender codes -> Misconfigured;
    bad recipient codes -> Permanent(INVALID_RECIPIENT); other 4xx -> Permanent(CLIENT_ERROR).
    """
    if isinstance(exc, DeliveryError):
        return exc
    # aiohttp.ServerTimeoutError is both a ClientError and a TimeoutError: timeout wins.
    if isinstance(exc, TimeoutError):
        return Transient(FailureReason.TIMEOUT, "twilio request timed out")
    if isinstance(exc, aiohttp.ClientError):
        return Transient(FailureReason.CONNECTION, f"twilio connection failed: {type(exc).__name__}")
    status = getattr(exc, "status", None)
    if isinstance(exc, TwilioException) and isinstance(status, int):
        return _classify_status(status, _code(exc), _message(exc))
    if isinstance(exc, json.JSONDecodeError):
        # Twilio may have accepted it; only the reply is unreadable. Ambiguous like a 5xx.
        return Transient(FailureReason.SERVER_ERROR, "twilio returned a 2xx body that is not JSON")
    return Transient(FailureReason.OTHER, f"twilio error: {type(exc).__name__}")


def _classify_status(status: int, code: int | None, message: str) -> DeliveryError:
    detail = f"twilio {status}/{code}: {message}" if code else f"twilio {status}: {message}"
    if status == 429 or code == RATE_LIMIT_CODE:
        # A 429 was never processed and is always safe to retry (twilio.md §4).
        return RateLimited(FailureReason.RATE_LIMITED, detail, retry_after=retry_after_seconds())
    if status >= 500:
        return Transient(FailureReason.SERVER_ERROR, detail)
    if status == 401 or code in AUTH_CODES:
        return Misconfigured(FailureReason.AUTH, detail)
    if code in RECIPIENT_CODES:
        return Permanent(FailureReason.INVALID_RECIPIENT, detail)
    if 400 <= status < 500:
        return Permanent(FailureReason.CLIENT_ERROR, detail)
    # A 3xx (redirects are not followed, a POST must not be replayed) means base_url is wrong.
    return Misconfigured(FailureReason.OTHER, detail)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    try:
        return int(str(code)) if code is not None else None
    except ValueError:
        return None


def _message(exc: BaseException) -> str:
    text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", None)
    # Twilio messages may quote the To number but never credentials; cap the length for the DB.
    return str(text or type(exc).__name__)[:300]


def retry_after_seconds(headers: Mapping[str, str] | None = None) -> float | None:
    """Read Retry-After (delta-seconds or HTTP date) from `headers` or the last response.

    Returns None when absent or unparseable: Twilio documents no Retry-After, so it is a hint.
    """
    if headers is None:
        headers = last_response_headers.get()
    # Case-insensitive: aiohttp's CIMultiDict is, a plain dict from a caller may not be.
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def classify_delivery_error_code(code: str | None) -> tuple[bool, FailureReason]:
    """Classify the ErrorCode of a failed/undelivered receipt as (retryable, reason).

    30001, 30003 and 30008 may succeed later; every other code (and a missing one) is final
    for SMS. 30003 and 30006 suggest a voice call instead (see VOICE_FALLBACK_CODES).
    """
    key = (code or "").strip()
    if key in _RETRYABLE_DELIVERY:
        return True, _RETRYABLE_DELIVERY[key]
    return False, _FINAL_DELIVERY.get(key, FailureReason.OTHER)


def prefers_voice(code: str | None) -> bool:
    """True when a failed SMS receipt's ErrorCode says the number is better reached by voice."""
    return (code or "").strip() in VOICE_FALLBACK_CODES
