"""What happens after the sandbox accepts a message or call: statuses, callbacks, keypresses."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit
from xml.etree.ElementTree import Element, ParseError

from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped, unused-ignore]

from gateway.sandbox.callbacks import CallbackPoster, CallbackRecord
from gateway.sandbox.config import CALL_FAILURES, MESSAGE_FAILURES, SandboxConfig
from gateway.sandbox.wire import Record, pause, rfc2822

# Call status -> the StatusCallbackEvent that announces it (twilio.md §5).
_EVENT_OF = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}


class NoGather(LookupError):
    """The call has no Gather action to post a keypress to."""


def parse_twiml(twiml: str) -> tuple[str | None, str, str]:
    """(Gather action, Gather method, spoken text) of a TwiML document; never raises.

    Parsed with defusedxml: the document comes from the network and may be hostile.
    """
    try:
        root: Element = fromstring(twiml)
    except (ParseError, ValueError):  # defusedxml's refusals (entities, DTDs) are ValueErrors
        return None, "POST", ""
    gather = root.find(".//Gather")
    spoken = " ".join((say.text or "").strip() for say in root.iter("Say"))
    if gather is None:
        return None, "POST", spoken
    return gather.get("action"), gather.get("method", "POST").upper(), spoken


def message_steps(config: SandboxConfig, to: str) -> list[tuple[str, str | None]]:
    """The (status, ErrorCode) sequence a message to `to` goes through after `queued`."""
    rule = config.fail_rule(to)
    if rule is None or rule.status not in MESSAGE_FAILURES:
        return [("sending", None), ("sent", None), ("delivered", None)]
    if rule.status == "failed":
        return [("sending", None), ("failed", rule.error_code)]
    return [("sending", None), ("sent", None), ("undelivered", rule.error_code)]


def call_steps(config: SandboxConfig, to: str) -> list[str]:
    """The status sequence of a call to `to`; the last one is final."""
    rule = config.fail_rule(to)
    final = rule.status if rule is not None and rule.status in CALL_FAILURES else "completed"
    if final == "completed":
        return ["initiated", "ringing", "in-progress", "completed"]
    if final in ("busy", "failed"):
        return ["initiated", final]
    return ["initiated", "ringing", final]


class Engine:
    """Holds accepted records and runs their progress as background tasks."""

    def __init__(
        self,
        config: Callable[[], SandboxConfig],
        poster: CallbackPoster,
        stopping: asyncio.Event,
        keep: int = 10_000,
    ) -> None:
        """`config` is read afresh at each step, so runtime changes apply to calls in flight."""
        self.records: OrderedDict[str, Record] = OrderedDict()
        self._config = config
        self._poster = poster
        self._stopping = stopping
        self._keep = keep
        self._tasks: set[asyncio.Task[None]] = set()

    def accept(self, record: Record) -> None:
        """Keep `record` and start its progress."""
        self.records[record.sid] = record
        while len(self.records) > self._keep:
            self.records.popitem(last=False)
        run = self._run_message if record.kind == "messages" else self._run_call
        self._spawn(run(record))

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until every message and call in flight reached its final status.

        Raises:
            TimeoutError: still busy after `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel_all(self) -> None:
        """Stop all progress (sandbox shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def press(self, sid: str, digits: str = "1") -> CallbackRecord:
        """Post `digits` to the call's Gather action now, signed, and return the record.

        Raises:
            KeyError: no call with that sid.
            NoGather: the call's TwiML has no usable Gather action.
        """
        record = self.records[sid]
        if record.kind != "calls":
            raise KeyError(sid)
        action = urljoin(record.url or "", record.gather_action or "")
        if not record.gather_action or urlsplit(action).scheme not in ("http", "https"):
            raise NoGather(sid)
        record.digits.append(digits)
        config = self._config()
        params = record.call_params(config.account_sid) | {"Digits": digits, "FinishedOnKey": ""}
        return await self._deliver(config, "gather", record, action, params, record.gather_method)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self._stopping.is_set():
            coro.close()
            return
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_message(self, record: Record) -> None:
        for status, code in message_steps(self._config(), record.to):
            if not await pause(self._stopping, self._config().callback_delay):
                return
            record.status, record.error_code = status, code
            config = self._config()
            if record.status_callback:
                params = record.message_params(config.account_sid)
                await self._deliver(config, "status", record, record.status_callback, params)

    async def _run_call(self, record: Record) -> None:
        for status in call_steps(self._config(), record.to):
            if not await pause(self._stopping, self._config().callback_delay):
                return
            record.status = status
            if status == "in-progress":
                await self._load_twiml(record)
            if status == "completed":
                record.duration = self._config().call_duration
            await self._announce(record, _EVENT_OF.get(status, "completed"))
            if status == "in-progress" and self._config().presses(record.to):
                await self._auto_press(record)

    async def _auto_press(self, record: Record) -> None:
        if not await pause(self._stopping, self._config().callback_delay):
            return
        try:
            await self.press(record.sid)
        except (KeyError, NoGather):
            return  # nothing to press on: the call just runs to its end

    async def _announce(self, record: Record, event: str) -> None:
        if not record.status_callback or event not in record.events:
            return
        config = self._config()
        params = record.call_params(config.account_sid) | {
            "CallbackSource": "call-progress-events",
            "SequenceNumber": str(record.sequence),
            "Timestamp": rfc2822(datetime.now(UTC)),
        }
        if event == "completed":
            seconds = record.duration or 0
            # CallDuration is in seconds; Duration is the billed minutes.
            params |= {"CallDuration": str(seconds), "Duration": str(math.ceil(seconds / 60))}
        record.sequence += 1
        await self._deliver(config, "status", record, record.status_callback, params)

    async def _load_twiml(self, record: Record) -> None:
        # With Url instead of Twiml, Twilio fetches the TwiML once the call is answered.
        if record.twiml is None and record.url:
            config = self._config()
            params = record.call_params(config.account_sid)
            fetched = await self._deliver(config, "twiml", record, record.url, params)
            record.twiml = fetched.response_text if fetched.ok else ""
            record.gather_action, record.gather_method, record.body = parse_twiml(record.twiml)

    async def _deliver(
        self,
        config: SandboxConfig,
        kind: str,
        record: Record,
        url: str,
        params: dict[str, str],
        method: str = "POST",
    ) -> CallbackRecord:
        return await self._poster.deliver(
            kind=kind,
            sid=record.sid,
            url=url,
            params=params,
            auth_token=config.auth_token,
            retries=config.callback_retries,
            timeout_s=config.callback_timeout,
            method=method,
        )
