"""Twilio wire formats the sandbox speaks: sids, dates, segments, JSON bodies (twilio.md §3, §8)."""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Literal

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
MAX_BODY_CHARS = 1600

# GSM 03.38 default alphabet; anything outside it (and its extension table) forces UCS-2.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension characters take an escape plus the character: two septets each.
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

Kind = Literal["messages", "calls"]


def new_sid(prefix: str) -> str:
    """A Twilio-shaped sid: two-letter prefix plus 32 hex digits."""
    return prefix + uuid.uuid4().hex


def rfc2822(moment: datetime) -> str:
    """Twilio's date format, e.g. 'Sat, 28 Nov 2026 10:42:54 GMT'."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def count_segments(body: str) -> int:
    """Segments Twilio bills for `body`: GSM-7 160/153 per segment, else UCS-2 70/67."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in body):
        units = sum(2 if ch in GSM_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        # UCS-2 counts UTF-16 code units, so an emoji (a surrogate pair) counts 2.
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else math.ceil(units / multi)


def mask(number: str) -> str:
    """Hide all but the last 4 characters of a phone number."""
    return "*" * max(0, len(number) - 4) + number[-4:]


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's 2010 error JSON; no `type`/`title`, which would switch the SDK to RFC 9457."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`, waking early when the sandbox stops; False if it stopped."""
    if stopping.is_set():
        return False
    if seconds <= 0:
        return True
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return True
    return False


@dataclass
class Record:
    """One message or call the sandbox accepted, and how far it has progressed."""

    sid: str
    kind: Kind
    to: str
    from_: str
    body: str
    status: str
    status_callback: str | None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    num_segments: int = 1
    events: tuple[str, ...] = ("completed",)
    twiml: str | None = None
    url: str | None = None
    gather_action: str | None = None
    gather_method: str = "POST"
    error_code: str | None = None
    digits: list[str] = field(default_factory=list)
    duration: int | None = None
    stalled: bool = False
    sequence: int = 0

    def public(self) -> dict[str, Any]:
        """The /sandbox/messages view, numbers masked."""
        return {
            "sid": self.sid,
            "kind": self.kind,
            "to": mask(self.to),
            "from": mask(self.from_),
            "body": self.body,
            "status": self.status,
            "error_code": self.error_code,
            "num_segments": self.num_segments,
            "digits": list(self.digits),
            "gather_action": self.gather_action,
            "created_at": rfc2822(self.created_at),
            "stalled": self.stalled,
        }

    def api_json(self, account_sid: str) -> dict[str, Any]:
        """The 201 body of the create call."""
        date = rfc2822(self.created_at)
        resource = "Messages" if self.kind == "messages" else "Calls"
        common: dict[str, Any] = {
            "sid": self.sid,
            "account_sid": account_sid,
            "api_version": API_VERSION,
            "status": self.status,
            "to": self.to,
            "from": self.from_,
            "direction": "outbound-api",
            "date_created": date,
            "date_updated": date,
            "price": None,
            "price_unit": "USD",
            "uri": f"/{API_VERSION}/Accounts/{account_sid}/{resource}/{self.sid}.json",
        }
        if self.kind == "messages":
            return common | {
                "body": self.body,
                "num_segments": str(self.num_segments),
                "num_media": "0",
                "messaging_service_sid": None,
                "error_code": None,
                "error_message": None,
                "date_sent": None,
            }
        return common | {
            "to_formatted": self.to,
            "from_formatted": self.from_,
            "parent_call_sid": None,
            "start_time": None,
            "end_time": None,
            "duration": None,
            "answered_by": None,
            "caller_name": None,
        }

    def call_params(self, account_sid: str) -> dict[str, str]:
        """Parameters Twilio sends with every request about a call."""
        return {
            "AccountSid": account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": self.sid,
            "CallStatus": self.status,
            "Called": self.to,
            "Caller": self.from_,
            "Direction": "outbound-api",
            "From": self.from_,
            "To": self.to,
        }

    def message_params(self, account_sid: str) -> dict[str, str]:
        """A message status callback's form (twilio.md §5)."""
        params = {
            "AccountSid": account_sid,
            "ApiVersion": API_VERSION,
            "From": self.from_,
            "MessageSid": self.sid,
            "MessageStatus": self.status,
            "SmsSid": self.sid,
            "SmsStatus": self.status,
            "To": self.to,
        }
        if self.error_code:
            params["ErrorCode"] = self.error_code
        if self.status in ("delivered", "undelivered"):
            # Twilio adds fields without notice; receivers must validate over all of them.
            params["RawDlrDoneDate"] = datetime.now(UTC).strftime("%y%m%d%H%M")
        return params
