"""A local Twilio look-alike: the real SDK talks to it through a base-URL override.

It speaks the Messages and Calls create endpoints (twilio.md §3), injects faults, plays
status callbacks and keypresses back, and counts everything for rate checks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import socket
from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from gateway.sandbox.callbacks import CallbackPoster, CallbackRecord
from gateway.sandbox.config import SandboxConfig
from gateway.sandbox.control import add_control_routes
from gateway.sandbox.lifecycle import Engine, parse_twiml
from gateway.sandbox.stats import Outcome, SandboxStats
from gateway.sandbox.wire import (
    E164,
    MAX_BODY_CHARS,
    Kind,
    Record,
    count_segments,
    error_body,
    new_sid,
    pause,
)

_API = "/2010-04-01/Accounts/{account_sid}"
Answer = tuple[Outcome, web.Response]


class Sandbox:
    """The sandbox server. `async with Sandbox(config) as sb:` or `start()`/`stop()`."""

    def __init__(self, config: SandboxConfig | None = None) -> None:
        """Prepare the app; nothing listens until `start()`."""
        self.config = config or SandboxConfig()
        self.stats = SandboxStats()
        self._stopping = asyncio.Event()
        self._poster = CallbackPoster(self.stats)
        self.engine = Engine(lambda: self.config, self._poster, self._stopping)
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None
        self.app = web.Application()
        self.app.router.add_post(_API + "/Messages.json", self._messages)
        self.app.router.add_post(_API + "/Calls.json", self._calls)
        add_control_routes(self.app, self)

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on host:port (0 picks a free port; see `port` and `base_url`). Single use.

        Raises:
            OSError: the port cannot be bound.
            RuntimeError: already started, or stopped.
        """
        if self._runner is not None or self._stopping.is_set():
            raise RuntimeError("a Sandbox starts once")
        # Binding the socket ourselves is the public way to learn which port 0 picked.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family)
        self._host, self._port = host, int(sock.getsockname()[1])
        # A short shutdown timeout: stalled handlers wake on `_stopping` anyway.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        try:
            await self._poster.open()
            await self._runner.setup()
            await web.SockSite(self._runner, sock).start()
        except BaseException:
            sock.close()
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop listening, cancel callbacks in flight, close the client session (idempotent)."""
        self._stopping.set()
        await self.engine.cancel_all()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        await self._poster.close()

    @property
    def port(self) -> int:
        """The bound port.

        Raises:
            RuntimeError: not started.
        """
        if self._port is None:
            raise RuntimeError("sandbox not started")
        return self._port

    @property
    def base_url(self) -> str:
        """'http://host:port', for `TwilioConfig.base_url`.

        Raises:
            RuntimeError: not started.
        """
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    @property
    def callbacks(self) -> list[CallbackRecord]:
        """Every webhook made so far (status callbacks, Gather actions, TwiML fetches)."""
        return self._poster.records

    @property
    def records(self) -> dict[str, Record]:
        """Accepted messages and calls by sid."""
        return self.engine.records

    def update_config(self, changes: dict[str, Any]) -> SandboxConfig:
        """Apply runtime changes atomically (see `SandboxConfig.update`).

        Raises:
            ValueError: a bad key or value; the config is unchanged.
        """
        self.config = self.config.update(changes)
        return self.config

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait until all accepted messages and calls reached their final status.

        Raises:
            TimeoutError: still busy after `timeout` seconds.
        """
        await self.engine.drain(timeout)

    async def press(self, sid: str, digits: str = "1") -> CallbackRecord:
        """Simulate a keypress on call `sid` now.

        Raises:
            KeyError: unknown call.
            NoGather: the call has no Gather action.
        """
        return await self.engine.press(sid, digits)

    async def _messages(self, request: web.Request) -> web.Response:
        return await self._create(request, "messages")

    async def _calls(self, request: web.Request) -> web.Response:
        return await self._create(request, "calls")

    async def _create(self, request: web.Request, kind: Kind) -> web.Response:
        arrived = self.stats.arrived(kind)
        outcome, response = await self._answer(request, kind, arrived)
        self.stats.finished(kind, outcome)
        return response

    async def _answer(self, request: web.Request, kind: Kind, arrived: float) -> Answer:
        config = self.config
        fault = self._draw_fault(config, kind, arrived)
        if not await pause(self._stopping, config.latency):
            return _error(Outcome.SERVER_ERROR, 503, 20503, "Service Unavailable")
        stalled = fault == "timeout"
        if stalled:
            # Outlive the client's timeout; with timeout_accepts the request is then processed
            # anyway, the ambiguous case where a retry duplicates the SMS.
            stopped = not await pause(self._stopping, config.timeout_seconds)
            if stopped or not config.timeout_accepts:
                return _error(Outcome.TIMEOUT, 504, 20504, "Gateway Timeout")
        denied = self._check_auth(request, config)
        if denied is not None:
            return denied
        if fault == "429":
            headers = {"Retry-After": config.retry_after} if config.retry_after else None
            return _error(Outcome.THROTTLED, 429, 20429, "Too Many Requests", headers)
        if fault == "500":
            return _error(Outcome.SERVER_ERROR, 500, 20500, "Internal Server Error")
        form = await request.post()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        invalid = _validate(kind, fields, config)
        if invalid is not None:
            return invalid
        record = _new_record(kind, form, fields)
        record.stalled = stalled
        self.engine.accept(record)
        status = Outcome.TIMEOUT if stalled else Outcome.CREATED
        return status, web.json_response(record.api_json(config.account_sid), status=201)

    def _draw_fault(self, config: SandboxConfig, kind: Kind, arrived: float) -> str | None:
        # One draw per request keeps a seeded run reproducible whichever rates are set.
        roll = config.rng.random()
        if config.max_per_second is not None and self.stats.recent(kind, arrived) > config.max_per_second:
            return "429"
        for fault, rate in (("timeout", config.rate_timeout), ("429", config.rate_429), ("500", config.rate_500)):
            if roll < rate:
                return fault
            roll -= rate
        return None

    def _check_auth(self, request: web.Request, config: SandboxConfig) -> Answer | None:
        login, password = _basic_credentials(request.headers.get("Authorization", ""))
        expected = f"{config.account_sid}:{config.auth_token}".encode()
        if not hmac.compare_digest(f"{login}:{password}".encode(), expected):
            return _error(Outcome.UNAUTHORIZED, 401, 20003, "Authenticate")
        if request.match_info["account_sid"] != config.account_sid:
            return _error(Outcome.NOT_FOUND, 404, 20404, "The requested resource was not found")
        return None


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    login, _, password = decoded.partition(":")
    return login, password


def _error(outcome: Outcome, status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return outcome, web.json_response(error_body(status, code, message), status=status, headers=headers)


def _invalid(code: int, message: str) -> Answer:
    return _error(Outcome.INVALID, 400, code, message)


def _validate(kind: Kind, fields: dict[str, str], config: SandboxConfig) -> Answer | None:
    to = fields.get("To", "")
    if not to:
        return (
            _invalid(21604, "A 'To' phone number is required.")
            if kind == "messages"
            else _invalid(21201, "No 'To' number is specified")
        )
    if not E164.match(to):
        return _invalid(21211, f"The 'To' number {to} is not a valid phone number.")
    if to in config.reject_numbers:
        code = config.reject_numbers[to]
        return _invalid(code, f"Sandbox rejects {to} with error {code}.")
    if kind == "calls":
        if not fields.get("From"):
            return _invalid(21213, "A 'From' phone number is required.")
        if not fields.get("Twiml") and not fields.get("Url"):
            return _invalid(21200, "Url, Twiml or ApplicationSid is required.")
        return None
    if not fields.get("From") and not fields.get("MessagingServiceSid"):
        return _invalid(21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message")
    if not fields.get("Body") and not fields.get("MediaUrl"):
        return _invalid(21602, "Message body is required.")
    if len(fields.get("Body", "")) > MAX_BODY_CHARS:
        return _invalid(21617, "The concatenated message body exceeds the 1600 character limit.")
    return None


def _new_record(kind: Kind, form: MultiDictProxy[Any], fields: dict[str, str]) -> Record:
    to, from_ = fields["To"], fields.get("From", "")
    callback = fields.get("StatusCallback") or None
    if kind == "messages":
        body = fields.get("Body", "")
        # A Messaging Service queues the message as `accepted` rather than `queued` (twilio.md §3).
        status = "accepted" if fields.get("MessagingServiceSid") else "queued"
        return Record(new_sid("SM"), kind, to, from_, body, status, callback, num_segments=count_segments(body))
    # StatusCallbackEvent comes once per event; Twilio's default is `completed` only.
    events = tuple(str(e) for e in form.getall("StatusCallbackEvent", [])) or ("completed",)
    twiml = fields.get("Twiml") or None
    record = Record(new_sid("CA"), kind, to, from_, "", "queued", callback, events=events, twiml=twiml)
    record.url = fields.get("Url") or None
    if twiml is not None:
        record.gather_action, record.gather_method, record.body = parse_twiml(twiml)
    return record
