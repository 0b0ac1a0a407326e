"""SMS through Alibaba Cloud's SendSms API: approved template + parameters, registered sign name.

Aliyun sends only pre-approved templates to mainland numbers, so the message text is not sent:
the gateway puts the template code and its parameters into `Message.meta` (keys below), and the
platform renders 【sign】+template. `OutId` carries the delivery id, so receipts name it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from channels.aliyun.client import AliyunApi, AliyunConfig
from channels.aliyun.errors import guarded_call
from channels.aliyun.receipts import SmsReceipt, details_to_receipts
from channels.base import Capabilities, Destination, FailureReason, Message, Permanent, SendResult

META_TEMPLATE = "aliyun_template"  # template code, e.g. SMS_123456789
META_PARAMS = "aliyun_params"  # JSON object of the template's variables
META_SEGMENTS = "aliyun_segments"  # billed segments, when the gateway knows the template text
# Total length incl. the signature, per the platform (https://help.aliyun.com/zh/sms/sms-content-specifications).
MAX_BODY_CHARS = 500
# QuerySendDetails pages hold at most 50 records (API reference, PageSize).
QUERY_PAGE_SIZE = 50


def _utcnow() -> datetime:
    return datetime.now(UTC)


def domestic_number(address: str) -> str | None:
    """The 11-digit mainland mobile number for an E.164 `+86...` address, else None."""
    if address.startswith("+86") and address[3:].isdigit():
        return address[3:]
    return None


class AliyunSms:
    """The `sms` channel through Aliyun; receipts come by pull (QuerySendDetails) or push (SmsReport).

    Message.meta keys read: `aliyun_template`, `aliyun_params`, `aliyun_segments`.
    """

    name: str = "sms"
    capabilities: Capabilities = Capabilities(max_body_chars=MAX_BODY_CHARS, receipts=True, acks=True)

    def __init__(self, config: AliyunConfig, *, api: AliyunApi | None = None,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        """Use `api` to share the SDK clients with the voice channel; else build our own."""
        self.config = config
        self.api = api or AliyunApi(config)
        self._clock = clock

    def can_send(self, message: Message, dest: Destination) -> bool:
        """True for a mainland number and a message carrying a template; the failover router
        sends anything else (numbers abroad, kinds without an approved template) elsewhere."""
        return domestic_number(dest.address) is not None and bool(message.meta.get(META_TEMPLATE))

    async def send(self, message: Message, dest: Destination, *, key: str, timeout: float) -> SendResult:
        """SendSms with `OutId` = `key` (the delivery id); `final=False`: a receipt is to come.

        Raises:
            Permanent: no template in the message, or not a mainland number.
            Transient, RateLimited, Permanent, Misconfigured: the classified API failure.
        """
        phone = domestic_number(dest.address)
        code = message.meta.get(META_TEMPLATE)
        if phone is None or not code:
            raise Permanent(FailureReason.CLIENT_ERROR,
                            "aliyun sms needs a mainland (+86) number and a template mapping")
        from alibabacloud_dysmsapi20170525 import models as sms_models  # loaded with AliyunApi

        request = sms_models.SendSmsRequest(
            phone_numbers=phone, sign_name=self.config.sign_name, template_code=code,
            template_param=message.meta.get(META_PARAMS) or "{}", out_id=key,
        )
        client = self.api.sms()
        body = await guarded_call(lambda: client.send_sms_async(request), timeout)
        return SendResult(provider_ref=str(body.biz_id), accepted_at=self._clock(),
                          segments=_segments(message.meta.get(META_SEGMENTS)), final=False)

    async def query(self, phone: str, send_date: str, *, timeout: float, page: int = 1,
                    biz_id: str | None = None) -> tuple[list[SmsReceipt], int]:
        """One QuerySendDetails page: the receipts of `phone` (11 digits) on `send_date` (yyyyMMdd,
        Beijing time) and the total count. Without `biz_id` the page covers every message sent to
        that number that day, which batches the receipts of several deliveries into one call.

        Raises:
            Transient, RateLimited, Permanent, Misconfigured: the classified API failure.
        """
        from alibabacloud_dysmsapi20170525 import models as sms_models  # loaded with AliyunApi

        request = sms_models.QuerySendDetailsRequest(phone_number=phone, send_date=send_date, biz_id=biz_id,
                                                     page_size=QUERY_PAGE_SIZE, current_page=page)
        client = self.api.sms()
        body = await guarded_call(lambda: client.query_send_details_async(request), timeout)
        dtos = getattr(getattr(body, "sms_send_detail_dtos", None), "sms_send_detail_dto", None) or []
        return details_to_receipts(dtos), int(body.total_count or 0)

    async def aclose(self) -> None:
        """Drop the (possibly shared) SDK clients."""
        await self.api.aclose()


def template_params(values: Mapping[str, Any]) -> str:
    """The TemplateParam JSON: Chinese as is (the platform counts characters, not escapes)."""
    return json.dumps({k: str(v) for k, v in values.items()}, ensure_ascii=False, separators=(",", ":"))


def _segments(value: object) -> int:
    try:
        return max(1, int(str(value))) if value else 1
    except ValueError:
        return 1
