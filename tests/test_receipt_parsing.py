"""Each provider's receipts read as the one neutral `Receipt` that gateway/flows/receipts.py applies."""

from __future__ import annotations

from channels.aliyun import CallReceipt, SmsReceipt
from gateway.flows.receipts import Outcome, Receipt
from gateway.providers.aliyun.receipts import call_receipt, sms_receipt
from gateway.providers.twilio.receipts import parse_status


def test_twilio_message_and_call_words_map_to_outcomes() -> None:
    sms = parse_status({"MessageSid": "SM1", "MessageStatus": "Undelivered", "ErrorCode": "30005"})
    assert sms == Receipt(provider="twilio", outcome=Outcome.FAILED, status="undelivered", ref="SM1", code="30005",
                          reason="invalid_recipient", detail="undelivered (error 30005)",
                          retry_detail="call undelivered")
    assert parse_status({"MessageSid": "SM1", "MessageStatus": "read"}).outcome is Outcome.DELIVERED
    assert parse_status({"MessageSid": "SM1", "MessageStatus": "sending"}).outcome is Outcome.PROGRESS
    assert parse_status({"CallSid": "CA1", "CallStatus": "completed"}).outcome is Outcome.DELIVERED
    busy = parse_status({"CallSid": "CA1", "CallStatus": "no-answer"})
    assert (busy.outcome, busy.reason, busy.retry_detail, busy.channel) == (
        Outcome.UNANSWERED, "other", "call no-answer", None)
    assert parse_status({"CallSid": "CA1", "CallStatus": "canceled"}).outcome is Outcome.FAILED
    assert parse_status({"CallSid": "CA1", "CallStatus": "ringing"}).outcome is Outcome.PROGRESS
    assert parse_status({}).log_ref == "?"


def test_aliyun_reports_map_to_outcomes_and_find_by_reference_or_our_id() -> None:
    assert sms_receipt(SmsReceipt(out_id="dl_1", status="pending", code="")) is None
    ok = sms_receipt(SmsReceipt(out_id="dl_1", status="delivered", code="DELIVERED", biz_id="B1"))
    assert ok is not None and (ok.outcome, ok.ref, ok.out_id, ok.channel) == (
        Outcome.DELIVERED, "aliyun:B1", "dl_1", "sms")
    bad = sms_receipt(SmsReceipt(out_id="dl_1", status="failed", code="MOBILE_NOT_ON_SERVICE"))
    assert bad is not None and (bad.outcome, bad.reason, bad.detail, bad.log_ref) == (
        Outcome.FAILED, "invalid_recipient", "sms MOBILE_NOT_ON_SERVICE", "aliyun:dl_1")
    busy = call_receipt(CallReceipt(call_id="C1", out_id="dl_2", status="busy", code="200010"))
    assert (busy.outcome, busy.code, busy.detail, busy.retry_detail, busy.ref) == (
        Outcome.UNANSWERED, "busy:200010", "voice busy:200010", "call busy (200010)", "aliyun:C1")
    assert call_receipt(CallReceipt(call_id="C1", out_id="dl_2", status="completed", code="200000")).outcome \
        is Outcome.DELIVERED
    assert call_receipt(CallReceipt(call_id="", out_id="dl_2", status="failed", code="x")).outcome is Outcome.FAILED
