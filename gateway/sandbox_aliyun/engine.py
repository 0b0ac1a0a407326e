"""The fake's state: sent messages and calls, their receipts (pull and push), and counters."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from gateway.sandbox_aliyun.config import AliyunSandboxConfig

BEIJING = ZoneInfo("Asia/Shanghai")  # SendDate and report times are Beijing time
_ids = itertools.count(int(time.time()) * 1000)


def beijing(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return datetime.fromtimestamp(ts, BEIJING).strftime(fmt)


@dataclass
class SmsRecord:
    """One accepted SendSms. `status`: pending until the receipt, then delivered or failed."""

    biz_id: str
    phone: str
    sign_name: str
    template_code: str
    params: dict[str, str]
    out_id: str
    sent_at: float
    status: str = "pending"
    err_code: str = ""
    final_at: float | None = None


@dataclass
class CallRecord:
    """One accepted SingleCallByTts and its result code (set when the call ends)."""

    call_id: str
    number: str
    show_number: str
    tts_code: str
    params: dict[str, str]
    play_times: int
    out_id: str
    sent_at: float
    status_code: str = ""
    final_at: float | None = None


@dataclass
class PushRecord:
    """One receipt push: where, what kind, how many reports, and the receiver's HTTP status."""

    url: str
    kind: str
    reports: int
    status: int
    body: Any = None


@dataclass
class Engine:
    """Records, receipts and pushes; `clock` is wall-clock seconds."""

    config: AliyunSandboxConfig
    clock: Callable[[], float] = time.time
    sms: dict[str, SmsRecord] = field(default_factory=dict)
    calls: dict[str, CallRecord] = field(default_factory=dict)
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    pushes: list[PushRecord] = field(default_factory=list)
    _queue: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    _timers: list[asyncio.TimerHandle] = field(default_factory=list)

    def arrived(self, action: str) -> None:
        self.arrivals.setdefault(action, []).append(self.clock())

    def answered(self, action: str, outcome: str) -> None:
        self.counts[action, outcome] += 1

    def add_sms(self, phone: str, sign: str, code: str, params: dict[str, str], out_id: str) -> SmsRecord:
        rec = SmsRecord(f"{next(_ids)}^0", phone, sign, code, params, out_id, self.clock())
        self.sms[rec.biz_id] = rec
        self._later(lambda: self._finish_sms(rec))
        return rec

    def add_call(self, number: str, show: str, code: str, params: dict[str, str], play_times: int,
                 out_id: str) -> CallRecord:
        rec = CallRecord(f"{next(_ids)}^{next(_ids)}", number, show, code, params, play_times, out_id, self.clock())
        self.calls[rec.call_id] = rec
        self._later(lambda: self._finish_call(rec))
        return rec

    def sent_today(self, phone: str, code: str) -> int:
        day = beijing(self.clock(), "%Y%m%d")
        return sum(1 for r in self.sms.values()
                   if r.phone == phone and r.template_code == code and beijing(r.sent_at, "%Y%m%d") == day)

    def query(self, phone: str, send_date: str, biz_id: str | None) -> list[SmsRecord]:
        return [r for r in self.sms.values() if r.phone == phone and beijing(r.sent_at, "%Y%m%d") == send_date
                and (not biz_id or r.biz_id == biz_id)]

    def _later(self, fn: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        if len(self._timers) > 1000:  # forget fired timers so long benchmarks stay bounded
            self._timers = [t for t in self._timers if t.when() > loop.time()]
        self._timers.append(loop.call_later(self.config.receipt_delay, fn))

    def _finish_sms(self, rec: SmsRecord) -> None:
        code = self.config.undeliverable.get(rec.phone)
        rec.status, rec.err_code, rec.final_at = ("failed", code, self.clock()) if code else (
            "delivered", "DELIVERED", self.clock())
        if self.config.sms_report_url:
            self._queue.append(("sms", self.config.sms_report_url, {
                "phone_number": rec.phone, "send_time": beijing(rec.sent_at), "report_time": beijing(rec.final_at),
                "success": rec.status == "delivered", "err_code": rec.err_code,
                "err_msg": "用户接收成功" if rec.status == "delivered" else "用户接收失败",
                "sms_size": "1", "biz_id": rec.biz_id, "out_id": rec.out_id}))

    def _finish_call(self, rec: CallRecord) -> None:
        rec.status_code, rec.final_at = self.config.call_results.get(rec.number, "200000"), self.clock()
        answered = rec.status_code in ("200000", "200001")
        if self.config.voice_report_url:
            self._queue.append(("voice", self.config.voice_report_url, {
                "call_id": rec.call_id, "start_time": beijing(rec.sent_at) if answered else "",
                "end_time": beijing(rec.final_at), "duration": "12" if answered else "0",
                "status_code": rec.status_code, "status_msg": "用户听完挂断" if answered else "呼叫失败",
                "out_id": rec.out_id, "dtmf": "", "caller": rec.show_number, "callee": rec.number,
                "toll_type": "LOCAL", "hangup_direction": "用户"}))

    async def push_loop(self, session: aiohttp.ClientSession, stopping: asyncio.Event) -> None:
        """Send queued reports as JSON arrays, one request per URL and batch, like the platform."""
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.config.push_interval)
            batch, self._queue = self._queue, []
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for kind, url, report in batch:
                groups.setdefault((kind, url), []).append(report)
            for (kind, url), reports in groups.items():
                await self._push(session, kind, url, reports)

    async def _push(self, session: aiohttp.ClientSession, kind: str, url: str, reports: list[dict[str, Any]]) -> None:
        data = json.dumps(reports, ensure_ascii=False).encode()
        try:
            async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                text = await r.text()
                try:
                    body: Any = json.loads(text)
                except json.JSONDecodeError:
                    body = text
                self.pushes.append(PushRecord(url, kind, len(reports), r.status, body))
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.pushes.append(PushRecord(url, kind, len(reports), 0, type(exc).__name__))

    def cancel(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()
