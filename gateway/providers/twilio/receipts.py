"""Twilio's status callbacks read as neutral receipts (gateway/flows/receipts.py applies them).

Message callbacks carry `MessageSid` / `MessageStatus`, call callbacks `CallSid` / `CallStatus`;
the references are stored bare ("SM..." / "CA..."), so they match whether or not Twilio sits
behind a failover channel.
"""

from __future__ import annotations

from collections.abc import Mapping

from channels.twilio import classify_delivery_error_code
from gateway.flows.receipts import Outcome, Receipt

PROVIDER = "twilio"
SMS_DELIVERED = {"delivered", "read"}
SMS_FAILED = {"undelivered", "failed"}
VOICE_UNANSWERED = {"busy", "no-answer"}
VOICE_FAILED = {"failed", "canceled"}


def parse_status(params: Mapping[str, str]) -> Receipt:
    """One status callback's form fields as a receipt (a callback without a reference is
    recorded as unmatched)."""
    voice = "MessageSid" not in params and "CallSid" in params
    ref = params.get("MessageSid") or params.get("CallSid") or ""
    status = (params.get("MessageStatus") or params.get("CallStatus") or "").lower()
    code = params.get("ErrorCode") or None
    detail = f"{status}" + (f" (error {code})" if code else "")
    if voice:
        outcome = (Outcome.DELIVERED if status == "completed" else Outcome.UNANSWERED if status in VOICE_UNANSWERED
                   else Outcome.FAILED if status in VOICE_FAILED else Outcome.PROGRESS)
        reason = "other"
    else:
        outcome = (Outcome.DELIVERED if status in SMS_DELIVERED else Outcome.FAILED if status in SMS_FAILED
                   else Outcome.PROGRESS)
        reason = classify_delivery_error_code(code)[1].value
    return Receipt(provider=PROVIDER, outcome=outcome, status=status, ref=ref, code=code, reason=reason,
                   detail=detail, retry_detail=f"call {status}")
