"""Aliyun receipts read as neutral receipts and applied by gateway/flows/receipts.py: pushed
SmsReport / VoiceReport batches and pulled QuerySendDetails pages both end here.

A receipt finds its delivery by `provider_ref` ("aliyun:<BizId>" / "aliyun:<CallId>"), else by
`OutId` (= the delivery id, which also covers an attempt whose answer timed out but which the
platform sent). Only a delivery in `sent` moves, so replays and late receipts change nothing.
Each outcome is reported to the failover channel (`report_receipt`) for its slow-receipt rule.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from channels.aliyun import AliyunSms, CallReceipt, SmsReceipt
from channels.base import DeliveryError, Destination, SendResult
from channels.failover import FailoverChannel
from gateway.dispatch.failover import provider_of
from gateway.flows.receipts import Outcome, Receipt, Resolved
from gateway.logs import get as get_logger
from gateway.store.ports import Receipts

log = get_logger("gateway.aliyun")
BEIJING = ZoneInfo("Asia/Shanghai")
PREFIX = "aliyun:"
# Carrier receipt codes that say the number cannot take SMS (stopped, empty, blacklisted);
# https://help.aliyun.com/zh/sms/developer-reference/receipt-error-codes. Others count as `other`.
_RECIPIENT_CODES = frozenset({"MOBILE_NOT_ON_SERVICE", "MOBILE_ACCOUNT_ABNORMAL", "MOBILE_IN_BLACK",
                              "MOBLLE_TERMINAL_ERROR", "INVALID_NUMBER", "USER_REJECT", "NO_ROUTE",
                              "MOBILE_TERMINAL_ERROR", "DB:0141", "MK:0000", "MK:0012"})


def sms_receipt(r: SmsReceipt) -> Receipt | None:
    """An SMS receipt in neutral terms; None while the carrier has no final word."""
    if r.status == "pending":
        return None
    ok = r.status == "delivered"
    return Receipt(provider="aliyun", outcome=Outcome.DELIVERED if ok else Outcome.FAILED,
                   status="delivered" if ok else "failed", ref=PREFIX + r.biz_id if r.biz_id else "",
                   out_id=r.out_id, channel="sms", code=r.code,
                   reason="invalid_recipient" if r.code in _RECIPIENT_CODES else "other", detail=f"sms {r.code}")


def call_receipt(r: CallReceipt) -> Receipt:
    """A call record in neutral terms: busy / no-answer are unanswered, completed delivered."""
    ok = r.status == "completed"
    outcome = (Outcome.DELIVERED if ok else Outcome.UNANSWERED if r.status in ("busy", "no-answer")
               else Outcome.FAILED)
    code = f"{r.status}:{r.code}"
    return Receipt(provider="aliyun", outcome=outcome, status="delivered" if ok else "failed",
                   ref=PREFIX + r.call_id if r.call_id else "", out_id=r.out_id, channel="voice", code=code,
                   detail=f"voice {code}", retry_detail=f"call {r.status} ({r.code})")


class ApplyReceipt(Protocol):
    """The one path applying every provider's receipts (`gateway.flows.receipts.ProviderReceipts.apply`);
    returns delivered / failed / stale / unmatched."""

    async def __call__(self, r: Receipt, *, resolved: Resolved | None = None) -> str: ...


@dataclass
class _Pending:
    phone: str
    send_date: str
    sent_at: float
    provider: str
    reported: bool = False


class AliyunReceipts:
    """Applies receipts, pulls SMS receipts, and watches every failover send for slow receipts."""

    def __init__(self, *, store: Receipts, apply: ApplyReceipt, slow_after: float, sms: AliyunSms | None,
                 composites: dict[str, FailoverChannel], token: str | None) -> None:
        """`store` reads a watched send's delivery back; `slow_after` is the failover's slow-receipt
        threshold (`channels.failover.slow_after`); `token` authenticates the push URL (None disables push)."""
        self._store = store
        self._apply = apply
        self._slow_after = slow_after
        self.sms = sms
        self.composites = composites
        self.token = token
        self._pending: dict[str, _Pending] = {}  # delivery id -> what to query / watch

    # ---- bookkeeping from the send path
    def track(self, kind: str, key: str, dest: Destination, result: SendResult) -> None:
        """Remember a send through a failover channel: for pulling and for the slow-receipt rule."""
        composite = self.composites.get(kind)
        if composite is None or result.provider_ref is None:
            return
        provider = provider_of(composite, result.provider_ref)
        if provider is None:
            return
        now = time.time()
        self._pending[f"{kind}/{key}"] = _Pending(dest.address.removeprefix("+86"),
                                                  datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d"),
                                                  now, provider)

    # ---- applying
    async def apply_sms(self, r: SmsReceipt) -> str:
        """Apply one SMS receipt; returns delivered / failed / stale / unmatched / pending."""
        receipt = sms_receipt(r)
        if receipt is None:
            return "pending"
        return await self._apply(receipt, resolved=self._resolved)

    async def apply_call(self, r: CallReceipt) -> str:
        """Apply one call record; busy / no-answer are retried while attempts remain."""
        return await self._apply(call_receipt(r), resolved=self._resolved)

    def _resolved(self, kind: str, delivery_id: str, ok: bool) -> None:
        p = self._pending.pop(f"{kind}/{delivery_id}", None)
        composite = self.composites.get(kind)
        if p is not None and composite is not None and not p.reported:
            composite.report_receipt(p.provider, ok, time.time() - p.sent_at)

    # ---- periodic work
    async def run(self, interval: float, rate: float, timeout: float) -> None:
        """Pull SMS receipts every `interval` seconds (at most `rate` queries a second) and apply
        the slow-receipt rule; runs until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.watch_slow()
                if self.sms is not None:
                    await self.pull(rate, timeout)
            except Exception:
                log.exception("aliyun_receipt_poll_failed")

    async def pull(self, rate: float, timeout: float) -> int:
        """One QuerySendDetails round over the pending Aliyun SMS, batched per number and day;
        returns the receipts applied."""
        assert self.sms is not None
        groups: dict[tuple[str, str], list[str]] = {}
        for key, p in list(self._pending.items()):
            kind, _, did = key.partition("/")
            if kind == "sms" and p.provider == "aliyun":
                groups.setdefault((p.phone, p.send_date), []).append(did)
        applied = 0
        for (phone, date), ids in groups.items():
            page, seen = 1, 0
            while True:
                try:
                    receipts, total = await self.sms.query(phone, date, timeout=timeout, page=page)
                except DeliveryError as exc:
                    log.warning("aliyun_query_failed", reason=exc.reason.value, detail=exc.detail)
                    return applied
                for r in receipts:
                    if r.out_id in ids and await self.apply_sms(r) in ("delivered", "failed"):
                        applied += 1
                seen += len(receipts)
                await asyncio.sleep(1.0 / rate)  # paced: QuerySendDetails has its own QPS cap
                if not receipts or seen >= total:
                    break
                page += 1
        return applied

    async def watch_slow(self) -> None:
        """Sends still without a final receipt after `slow_after` count as slow for their provider
        (Twilio's receipts are applied elsewhere: their outcome is read back from the store)."""
        slow_after = self._slow_after
        now = time.time()
        for key, p in list(self._pending.items()):
            if now - p.sent_at > 2 * 86400:  # past any receipt (QuerySendDetails keeps 30 days)
                self._pending.pop(key, None)
            if p.reported or now - p.sent_at < slow_after:
                continue
            kind, _, did = key.partition("/")
            d = await self._store.delivery(delivery_id=did)
            ok = bool(d and d["status"] == "delivered" and (d["delivered_at"] or now) - p.sent_at <= slow_after)
            composite = self.composites.get(kind)
            if composite is not None:
                composite.report_receipt(p.provider, ok, ((d or {}).get("delivered_at") or now) - p.sent_at)
            p.reported = True
            # keep only what a later pull can still resolve
            if d is None or d["status"] != "sent" or kind != "sms" or p.provider != "aliyun":
                self._pending.pop(key, None)
