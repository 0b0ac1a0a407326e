"""Aliyun delivery receipts, normalised: SMS by pull (QuerySendDetails) or push (SmsReport),
calls by push (VoiceReport). Statuses use the gateway's words: SMS `delivered` / `failed` /
`pending`; calls `completed` / `busy` / `no-answer` / `failed`.

Push formats (JSON arrays, one or more reports per request):
- SmsReport: https://help.aliyun.com/zh/sms/developer-reference/smsreport-2
- VoiceReport: https://help.aliyun.com/zh/vms/voicereport-7
The receiver answers `{"code": 0, "msg": "..."}`; anything else (or a non-200) is re-pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# QuerySendDetails SendStatus: 1 waiting for the carrier's receipt, 2 failed, 3 delivered
# (https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-querysenddetails).
_SEND_STATUS = {1: "pending", 2: "failed", 3: "delivered"}

# Call result codes (https://help.aliyun.com/zh/vms/developer-reference/operators-receipt-error-code).
# 200000 listened to the end and 200001 hung up early were both answered: the message was heard.
VOICE_STATUS = {
    "200000": "completed", "200001": "completed",
    "200002": "busy",
    "200003": "no-answer", "200005": "no-answer", "200007": "no-answer", "200010": "no-answer",
    "200004": "failed", "200006": "failed", "200011": "failed",
}


@dataclass(frozen=True, slots=True)
class SmsReceipt:
    """One SMS receipt. `out_id` is the delivery id we sent as OutId; `biz_id` is absent in pulls."""

    out_id: str
    status: str
    code: str
    phone: str = ""
    biz_id: str = ""


@dataclass(frozen=True, slots=True)
class CallReceipt:
    """One call record; `dtmf` holds keys pressed (the TTS notification collects none)."""

    call_id: str
    out_id: str
    status: str
    code: str
    dtmf: str = ""


def _items(body: Any) -> list[dict[str, Any]]:
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, list) or not all(isinstance(x, dict) for x in body):
        raise ValueError("a receipt push is a JSON array of objects")
    return body


def parse_sms_report(body: Any) -> list[SmsReceipt]:
    """Receipts from an SmsReport push body (parsed JSON).

    Raises:
        ValueError: not an array of report objects, or a report lacks biz_id/out_id.
    """
    out = []
    for item in _items(body):
        biz_id, out_id = str(item.get("biz_id") or ""), str(item.get("out_id") or "")
        if not biz_id and not out_id:
            raise ValueError("an SmsReport item needs biz_id or out_id")
        ok = item.get("success")
        status = "delivered" if ok is True or str(ok).lower() == "true" else "failed"
        out.append(SmsReceipt(out_id=out_id, status=status, code=str(item.get("err_code") or ""),
                              phone=str(item.get("phone_number") or ""), biz_id=biz_id))
    return out


def parse_voice_report(body: Any) -> list[CallReceipt]:
    """Call records from a VoiceReport push body (parsed JSON).

    Raises:
        ValueError: not an array of report objects, or a record lacks call_id/out_id.
    """
    out = []
    for item in _items(body):
        call_id, out_id = str(item.get("call_id") or ""), str(item.get("out_id") or "")
        if not call_id and not out_id:
            raise ValueError("a VoiceReport item needs call_id or out_id")
        code = str(item.get("status_code") or "")
        out.append(CallReceipt(call_id=call_id, out_id=out_id, status=VOICE_STATUS.get(code, "failed"),
                               code=code, dtmf=str(item.get("dtmf") or "")))
    return out


def details_to_receipts(dtos: Iterable[Any]) -> list[SmsReceipt]:
    """Receipts from QuerySendDetails' SmsSendDetailDTO objects (SDK models or dicts)."""
    out = []
    for dto in dtos:
        row: dict[str, Any] = dto if isinstance(dto, dict) else dto.to_map()
        status = _SEND_STATUS.get(int(row.get("SendStatus") or 1), "pending")
        out.append(SmsReceipt(out_id=str(row.get("OutId") or ""), status=status,
                              code=str(row.get("ErrCode") or ""), phone=str(row.get("PhoneNum") or "")))
    return out
