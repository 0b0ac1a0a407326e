"""Map Alibaba Cloud (SMS and voice) failures onto the gateway's closed failure classes.

Two shapes of failure come back from the SDK:
- an HTTP 4xx/5xx with a JSON error body (`Code`, `Message`): the SDK raises `ClientException`
  / `ServerException` / `ThrottlingException` (all `TeaException`s carrying `code`, `status_code`);
- an HTTP 200 whose body says `Code != "OK"` (business errors such as
  `isv.BUSINESS_LIMIT_CONTROL`): the SDK returns normally and `check_code()` classifies it.

Error code references:
- SMS API codes: https://help.aliyun.com/document_detail/101346.html
- Voice API codes: https://help.aliyun.com/zh/vms/developer-reference/api-error-codes
- Common gateway codes (InvalidAccessKeyId.NotFound, SignatureDoesNotMatch, Throttling.*):
  https://help.aliyun.com/zh/openapi/common-error-codes
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from Tea.exceptions import TeaException, UnretryableException

from channels.base import DeliveryError, FailureReason, Misconfigured, Permanent, RateLimited, Transient

# Our side is wrong: credentials, an unapproved/disabled sign name or template, the product not
# subscribed, the account out of money. Retrying cannot help; the operator must act.
AUTH_CODES = frozenset({
    "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "SignatureDoesNotMatch",
    "IncompleteSignature", "Forbidden.RAM", "isp.RAM_PERMISSION_DENY", "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL", "isv.PRODUCT_UN_SUBSCRIPT", "isv.PRODUCT_UNSUBSCRIBE", "isv.OUT_OF_SERVICE",
    "isv.AMOUNT_NOT_ENOUGH", "isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL", "isv.SIGN_STATE_ILLEGAL",
    "isv.SMS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_STATE_ILLEGAL", "isv.SMS_SIGNATURE_SCENE_ILLEGAL",
    "isv.DENY_IP_RANGE", "isv.DAY_LIMIT_CONTROL", "isv.MONTH_LIMIT_CONTROL",
    # voice: the called-show number is not ours, the TTS template is not approved
    "isv.DISPLAY_NUMBER_ILLEGAL", "isv.TTS_TEMPLATE_ILLEGAL", "isv.VOICE_FILE_ILLEGAL",
})
# The number itself is the problem: retrying SMS cannot help; the gateway falls back to voice.
RECIPIENT_CODES = frozenset({
    "isv.MOBILE_NUMBER_ILLEGAL", "isv.MOBILE_COUNT_OVER_LIMIT", "isv.BLACK_KEY_CONTROL_LIMIT",
    "isv.DOMESTIC_NUMBER_NOT_SUPPORTED", "isv.CALLED_NUMBER_ILLEGAL", "isv.BLACKLIST_NUMBER",
})
# The request is wrong for this template: a variable too long, missing or containing a URL.
CLIENT_CODES = frozenset({
    "isv.INVALID_PARAMETERS", "isv.TEMPLATE_MISSING_PARAMETERS", "isv.TEMPLATE_PARAMS_ILLEGAL",
    "isv.PARAM_LENGTH_LIMIT", "isv.PARAM_NOT_SUPPORT_URL", "isv.INVALID_JSON_PARAM",
    "isv.SMS_CONTENT_ILLEGAL", "isv.EXTEND_CODE_ERROR", "MissingParameter", "InvalidParameter",
})
# Flow control: per-number/per-template caps (50 notices/number/day) and the API's QPS limits.
# https://help.aliyun.com/zh/sms/user-guide/set-throttling-for-sms-sending
RATE_CODES = frozenset({"isv.BUSINESS_LIMIT_CONTROL", "Throttling", "Throttling.User", "Throttling.Api",
                        "Throttling.Concurrency", "isv.CONCURRENCY_LIMIT"})
# isv.BUSINESS_LIMIT_CONTROL is a per-number daily cap: try again no sooner than this.
BUSINESS_LIMIT_RETRY = 60.0

SEND_ERRORS: tuple[type[BaseException], ...] = (
    TeaException, UnretryableException, aiohttp.ClientError, TimeoutError, json.JSONDecodeError, OSError,
)


def classify_code(code: str, message: str, *, status: int = 200, retry_after: float | None = None
                  ) -> DeliveryError:
    """The DeliveryError for an Aliyun error `code` (never raises)."""
    detail = f"aliyun {status}/{code}: {message}"[:300]
    if code in RATE_CODES or code.startswith("Throttling") or status == 429:
        wait = retry_after if retry_after is not None else (BUSINESS_LIMIT_RETRY if code.startswith("isv.") else None)
        return RateLimited(FailureReason.RATE_LIMITED, detail, retry_after=wait)
    if code in AUTH_CODES or code.startswith(("InvalidAccessKeyId", "Forbidden")) or status in (401, 403):
        return Misconfigured(FailureReason.AUTH, detail)
    if code in RECIPIENT_CODES:
        return Permanent(FailureReason.INVALID_RECIPIENT, detail)
    if code in CLIENT_CODES:
        return Permanent(FailureReason.CLIENT_ERROR, detail)
    if status >= 500 or code in ("isp.SYSTEM_ERROR", "InternalError", "ServiceUnavailable", "isp.GATEWAY_ERROR"):
        return Transient(FailureReason.SERVER_ERROR, detail)
    if 400 <= status < 500:
        return Permanent(FailureReason.CLIENT_ERROR, detail)
    # An unknown business code on a 200: we cannot tell whether it was sent; treat as a retryable
    # server-side problem, bounded by the outbox's attempts and deadline.
    return Transient(FailureReason.OTHER, detail)


def classify(exc: BaseException) -> DeliveryError:
    """Return the DeliveryError for a failed SDK call (never raises).

    Timeouts and connection errors -> Transient; HTTP errors by their `Code` (see `classify_code`).
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, TimeoutError):
        return Transient(FailureReason.TIMEOUT, "aliyun request timed out")
    if isinstance(exc, UnretryableException):
        # the SDK wraps connection-level failures (refused, reset, DNS, its own read timeout) in a
        # RetryError whose message is aiohttp's text: host and port, never credentials
        inner = getattr(exc, "inner_exception", None)
        text = str(getattr(inner, "message", None) or inner or "")[:200]
        if isinstance(inner, TimeoutError) or "timeout" in text.lower():
            return Transient(FailureReason.TIMEOUT, f"aliyun request timed out: {text}")
        return Transient(FailureReason.CONNECTION, f"aliyun connection failed: {text}")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Transient(FailureReason.CONNECTION, f"aliyun connection failed: {type(exc).__name__}")
    if isinstance(exc, json.JSONDecodeError):
        return Transient(FailureReason.SERVER_ERROR, "aliyun returned a body that is not JSON")
    if isinstance(exc, TeaException):
        status = getattr(exc, "status_code", None) or 0
        retry_after = getattr(exc, "retry_after", None)
        data = getattr(exc, "data", None) or {}
        message = str(data.get("Message") or "") if isinstance(data, dict) else ""
        return classify_code(str(exc.code or ""), message or type(exc).__name__, status=int(status),
                             retry_after=float(retry_after) / 1000 if retry_after else None)
    return Transient(FailureReason.OTHER, f"aliyun error: {type(exc).__name__}")


def check_code(body: Any) -> None:
    """Raise the classified error when a 200 response body says `Code != "OK"`.

    Raises:
        DeliveryError: the body carries an error code.
    """
    code = str(getattr(body, "code", "") or "")
    if code != "OK":
        raise classify_code(code or "missing", str(getattr(body, "message", "") or ""))


async def guarded_call(call: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    """Await one SDK call for at most `seconds`; return the response body.

    The SDK's own retries are off (no `retry_options`), so this is one HTTP request.

    Raises:
        DeliveryError: the classified failure (Transient, RateLimited, Permanent, Misconfigured).
    """
    try:
        async with asyncio.timeout(seconds):
            response = await call()
    except SEND_ERRORS as exc:
        raise classify(exc) from exc
    body = getattr(response, "body", None)
    check_code(body)
    return body
