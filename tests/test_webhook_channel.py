"""WebhookChannel against a real local receiver: signing, classification, isolation, breaker."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from aiohttp import web

from channels.base import (
    Channel,
    Deferred,
    DeliveryError,
    Destination,
    FailureReason,
    Message,
    Misconfigured,
    Permanent,
    RateLimited,
    SendResult,
    Transient,
)
from channels.signing import SignatureError, generate_secret, secret_key, sign, verify
from channels.webhook import WebhookChannel
from tests.support.receiver import CLIENT_GONE, Receiver

SECRET = generate_secret()
MESSAGE = Message(text="重污染天气橙色预警", payload={"event": "warning.issued", "level": "橙色", "n": 1})
ROOT = Path(__file__).resolve().parents[1]


class FakeClock:
    """Monotonic seconds the test moves by hand, so the breaker cooldown needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver(SECRET) as r:
        yield r


@pytest.fixture
async def channel(clock: FakeClock) -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(SECRET, breaker_threshold=3, breaker_cooldown=30.0, clock=clock)
    yield ch
    await ch.aclose()


async def send(
    ch: WebhookChannel, url: str, key: str = "d-1", within: float = 5.0, message: Message = MESSAGE
) -> SendResult:
    return await ch.send(message, Destination(url, unit_id="u-1"), key=key, timeout=within)


async def failure(ch: WebhookChannel, url: str, key: str = "d-1", within: float = 5.0) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await send(ch, url, key, within)
    return info.value


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# --- signing ---------------------------------------------------------------------------------


def test_sign_matches_the_standard_webhooks_test_vector() -> None:
    # https://github.com/standard-webhooks/standard-webhooks (the libraries' shared test vector)
    secret, msg_id, ts = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
    body = b'{"test": 2432232314}'
    header = sign(secret, msg_id, ts, body)
    assert header == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    headers = {"Webhook-Id": msg_id, "Webhook-Timestamp": str(ts), "Webhook-Signature": header}
    verify(secret, headers, body, now=ts + 10)


def test_verify_accepts_any_listed_signature_for_rotation() -> None:
    old, new = generate_secret(), generate_secret()
    sigs = f"{sign(old, 'm', 100, b'x')} {sign(new, 'm', 100, b'x')}"
    for secret in (old, new):
        verify(
            secret, {"webhook-id": "m", "webhook-timestamp": "100", "webhook-signature": sigs}, b"x", now=100
        )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"webhook-signature": None}, "missing webhook-signature"),
        ({"webhook-id": None}, "missing webhook-id"),
        ({"webhook-timestamp": "soon"}, "not an integer"),
        ({"webhook-timestamp": "-201"}, "too old"),
        ({"webhook-timestamp": "401"}, "future"),
        ({"webhook-id": "other"}, "no matching"),
        ({"webhook-signature": "v1a,abc v2,xyz"}, "no matching"),
    ],
)
def test_verify_says_why_it_rejects(change: dict[str, str | None], reason: str) -> None:
    headers = {
        "webhook-id": "m",
        "webhook-timestamp": "100",
        "webhook-signature": sign(SECRET, "m", 100, b"{}"),
    }
    headers.update(change)  # type: ignore[arg-type]
    present = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, present, b"{}", now=100)


def test_secret_format() -> None:
    assert SECRET.startswith("whsec_") and len(secret_key(SECRET)) == 32
    with pytest.raises(ValueError, match="base64"):
        WebhookChannel("whsec_not base64!")


# --- delivery and classification -------------------------------------------------------------


async def test_delivers_signed_compact_json(channel: WebhookChannel, receiver: Receiver) -> None:
    result = await send(channel, receiver.url("/hooks/a"), key="delivery-42")
    assert result.final and result.provider_ref is None and result.accepted_at.tzinfo is not None
    [got] = receiver.received
    assert (got.path, got.webhook_id, got.status, got.signature_ok) == ("/hooks/a", "delivery-42", 200, True)
    assert got.json == dict(MESSAGE.payload)
    assert got.body == json.dumps(MESSAGE.payload, ensure_ascii=False, separators=(",", ":")).encode()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["user-agent"] == "zezhou-gateway"
    assert abs(got.timestamp - datetime.now(UTC).timestamp()) < 60
    verify(SECRET, got.headers, got.body)
    with pytest.raises(SignatureError, match="no matching"):
        verify(SECRET, got.headers, got.body.replace(b"1", b"2"))


async def test_pre_serialised_body_and_content_type_are_sent_verbatim(
    channel: WebhookChannel, receiver: Receiver
) -> None:
    body = '{"alert": "已解除"}'
    message = Message(text="x", meta={"body": body, "content_type": "application/cloudevents+json"})
    await send(channel, receiver.url("/ce"), message=message)
    [got] = receiver.received
    assert got.body == body.encode() and got.signature_ok
    assert got.headers["content-type"] == "application/cloudevents+json"


async def test_receiver_with_another_secret_rejects_as_auth(channel: WebhookChannel) -> None:
    async with Receiver(generate_secret()) as other:
        err = await failure(channel, other.url("/x"))
        assert (type(err), err.reason) == (Permanent, FailureReason.AUTH)
        assert other.received[0].signature_ok is False


@pytest.mark.parametrize(
    ("status", "kind", "reason"),
    [
        (500, Transient, FailureReason.SERVER_ERROR),
        (502, Transient, FailureReason.SERVER_ERROR),
        (503, Transient, FailureReason.SERVER_ERROR),
        (408, Transient, FailureReason.SERVER_ERROR),
        (425, Transient, FailureReason.SERVER_ERROR),
        (400, Permanent, FailureReason.CLIENT_ERROR),
        (404, Permanent, FailureReason.CLIENT_ERROR),
        (422, Permanent, FailureReason.CLIENT_ERROR),
        (401, Permanent, FailureReason.AUTH),
        (403, Permanent, FailureReason.AUTH),
        (302, Permanent, FailureReason.CLIENT_ERROR),
    ],
)
async def test_status_classification(
    channel: WebhookChannel, receiver: Receiver, status: int, kind: type[DeliveryError], reason: FailureReason
) -> None:
    receiver.script("/", status=status, times=1)
    err = await failure(channel, receiver.url("/s"))
    assert (type(err), err.reason, err.retry_after) == (kind, reason, None)
    assert str(status) in err.detail


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [(429, "2", 2.0), (429, None, None), (429, "soon", None), (503, "7", 7.0)],
)
async def test_retry_after_seconds(
    channel: WebhookChannel, receiver: Receiver, status: int, header: str | None, expected: float | None
) -> None:
    receiver.script("/", status=status, times=1, retry_after=header)
    err = await failure(channel, receiver.url("/r"))
    assert isinstance(err, Transient) and err.retry_after == expected
    assert isinstance(err, RateLimited) == (status == 429)
    assert err.reason is (FailureReason.RATE_LIMITED if status == 429 else FailureReason.SERVER_ERROR)


async def test_retry_after_http_date(channel: WebhookChannel, receiver: Receiver) -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    receiver.script("/", status=429, times=1, retry_after=when)
    err = await failure(channel, receiver.url("/r"))
    assert err.retry_after is not None and 100 < err.retry_after <= 120


async def test_gone_endpoint_is_remembered(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.script("/old", status=410, times=1)
    first = await failure(channel, receiver.url("/old"))
    second = await failure(channel, receiver.url("/old"), key="d-2")
    for err in (first, second):
        assert (type(err), err.reason) == (Misconfigured, FailureReason.CLIENT_ERROR)
    assert len(receiver.received) == 1  # no request for the second send
    await send(channel, receiver.url("/new"))  # the rest of the origin is unaffected
    assert receiver.delivered_ids() == {"d-1"}


async def test_slow_receiver_times_out(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.slow("/slow", 30)
    err = await failure(channel, receiver.url("/slow"), within=0.2)
    assert (type(err), err.reason) == (Transient, FailureReason.TIMEOUT)
    await receiver.wait_for(lambda r: len(r.received) == 1, timeout=5)
    assert receiver.received[0].status == CLIENT_GONE  # it never got to answer


async def test_closed_port_is_a_connection_error(channel: WebhookChannel) -> None:
    err = await failure(channel, closed_port_url())
    assert (type(err), err.reason) == (Transient, FailureReason.CONNECTION)


@pytest.mark.parametrize("address", ["not a url", "ftp://example.com/x", "http://", "/relative/path", ""])
async def test_invalid_url_is_an_invalid_recipient(channel: WebhookChannel, address: str) -> None:
    err = await failure(channel, address)
    assert (type(err), err.reason) == (Permanent, FailureReason.INVALID_RECIPIENT)


async def test_details_never_leak_the_secret_signature_or_url_path(
    channel: WebhookChannel, receiver: Receiver
) -> None:
    for status in (503, 429, 400, 401, 410):
        receiver.script("/", status=status, times=1)
    urls = [receiver.url(f"/token-{i}-s3cr3t") for i in range(5)] + [closed_port_url() + "/token-s3cr3t"]
    errors = [await failure(channel, url, key=f"k{i}") for i, url in enumerate(urls)]
    receiver.slow("/slow", 5)
    errors.append(await failure(channel, receiver.url("/slow-s3cr3t"), within=0.05))
    for err in errors:
        text = f"{err} {err.detail}"
        assert SECRET not in text and SECRET.removeprefix("whsec_") not in text
        assert "v1," not in text and "s3cr3t" not in text


# --- circuit breaker -------------------------------------------------------------------------


async def test_breaker_opens_short_circuits_and_half_opens(
    channel: WebhookChannel, receiver: Receiver, clock: FakeClock
) -> None:
    url = receiver.url("/hook")
    origin = channel.endpoint_key(Destination(url))
    receiver.script("/", status=200, times=4, delay=0.5)  # silence: answers after our timeout
    for i in range(3):
        assert (await failure(channel, url, key=f"a{i}", within=0.1)).reason is FailureReason.TIMEOUT
    assert channel.open_circuits() == [origin] and not channel.is_up()

    err = await failure(channel, url, key="b")
    # Deferred: nothing was sent, so the outbox refunds the attempt and waits out the cooldown
    assert (type(err), err.reason, err.retry_after) == (Deferred, FailureReason.CONNECTION, 30.0)
    assert "circuit open" in err.detail
    clock.advance(29.5)
    assert (await failure(channel, url, key="c")).retry_after == pytest.approx(0.5)
    await receiver.wait_for(lambda r: r.in_flight == 0, timeout=5)
    assert len(receiver.received) == 3  # short-circuited sends made no request

    clock.advance(0.5)  # half-open: the probe times out too and re-opens the circuit
    probe_err = await failure(channel, url, key="probe-1", within=0.1)
    assert (type(probe_err), probe_err.reason) == (Transient, FailureReason.TIMEOUT)
    assert probe_err.retry_after == 31.0  # behind the next probe (cooldown + 1 s), not first in line
    assert (await failure(channel, url, key="d")).retry_after == 30.0
    clock.advance(30)
    await send(channel, url, key="probe-2")  # success closes it
    assert channel.open_circuits() == [] and channel.is_up()
    await send(channel, url, key="after")
    assert receiver.delivered_ids() == {"probe-2", "after"}


async def test_half_open_lets_exactly_one_probe_through(
    channel: WebhookChannel, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.script("/", status=200, times=3, delay=0.5)  # answers only after our timeout
    for i in range(3):
        await failure(channel, receiver.url("/p"), key=f"f{i}", within=0.1)
    await receiver.wait_for(lambda r: r.in_flight == 0, timeout=5)
    clock.advance(30)
    receiver.slow("/p", 0.3)
    probe = asyncio.create_task(send(channel, receiver.url("/p"), key="probe"))
    await receiver.wait_for(lambda r: r.in_flight == 1, timeout=5)
    err = await failure(channel, receiver.url("/p"), key="second")
    assert isinstance(err, Deferred) and err.reason is FailureReason.CONNECTION and "half-open" in err.detail
    assert err.retry_after == 1.0
    assert (await probe).final and channel.is_up()


async def test_server_errors_do_not_open_the_circuit(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.script("/", status=503, times=6)
    for i in range(6):
        assert (await failure(channel, receiver.url("/x"), key=f"s{i}")).reason is FailureReason.SERVER_ERROR
    assert len(receiver.received) == 6 and channel.open_circuits() == []  # it answers: the outbox backs off


async def test_breaker_counts_connection_failures_not_rate_limits(
    channel: WebhookChannel, receiver: Receiver
) -> None:
    dead = closed_port_url()
    for i in range(3):
        await failure(channel, dead, key=f"dead{i}")
    assert channel.open_circuits() == [channel.endpoint_key(Destination(dead))]
    receiver.script("/", status=429, times=5)
    for i in range(5):
        assert isinstance(await failure(channel, receiver.url("/busy"), key=f"busy{i}"), RateLimited)
    assert len(receiver.received) == 5  # a throttling receiver is alive: its circuit stays closed
    assert channel.is_up()  # one healthy origin keeps the channel up


# --- isolation -------------------------------------------------------------------------------


async def test_slow_origin_does_not_delay_another(clock: FakeClock) -> None:
    ch = WebhookChannel(SECRET, per_endpoint_concurrency=2, clock=clock)
    async with Receiver(SECRET) as slow, Receiver(SECRET) as fast:
        slow.slow("/", 60)
        stuck = [asyncio.create_task(send(ch, slow.url(f"/s{i}"), key=f"s{i}", within=60)) for i in range(3)]
        try:
            await slow.wait_for(lambda r: r.in_flight == 2, timeout=5)
            assert (await send(ch, fast.url("/f"), key="f")).final
            assert fast.delivered_ids() == {"f"}
            assert not any(t.done() for t in stuck)
            assert slow.in_flight == 2  # the third waits for one of its origin's 2 slots
            queued = await failure(ch, slow.url("/s9"), key="s9", within=0.1)
            assert queued.reason is FailureReason.TIMEOUT  # waiting for a slot counts
            assert "s9" not in slow.count_by_id()
        finally:
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
            await ch.aclose()


# --- channel surface -------------------------------------------------------------------------


async def test_channel_surface(channel: WebhookChannel) -> None:
    assert isinstance(channel, Channel) and channel.name == "webhook"
    assert channel.capabilities.max_body_chars == 1_000_000 and not channel.capabilities.receipts
    assert (
        channel.endpoint_key(Destination("https://Hooks.Example.com/a?b=1"))
        == "https://hooks.example.com:443"
    )
    assert channel.endpoint_key(Destination("http://[::1]:8080/x")) == "http://[::1]:8080"
    assert channel.endpoint_key(Destination("nonsense")) == "nonsense"
    assert channel.is_up() and channel.open_circuits() == []
    with pytest.raises(ValueError, match="concurrency"):
        WebhookChannel(SECRET, per_endpoint_concurrency=0)


async def test_aclose_is_idempotent_and_final(channel: WebhookChannel, receiver: Receiver) -> None:
    await send(channel, receiver.url("/x"))
    await channel.aclose()
    await channel.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await send(channel, receiver.url("/x"))


# --- the receiver itself ---------------------------------------------------------------------


async def test_receiver_scripts_run_in_order_and_count(channel: WebhookChannel, receiver: Receiver) -> None:
    receiver.script("/a", status=503, times=1)
    receiver.script("/a", status=500, times=1)
    receiver.script("/b", status=400, times=-1)
    outcomes = []
    for key in ("k1", "k1", "k1"):
        try:
            await send(channel, receiver.url("/a/x"), key=key)
            outcomes.append(200)
        except DeliveryError as exc:
            outcomes.append(int(exc.detail.split()[1]))
    for _ in range(2):
        await failure(channel, receiver.url("/b"), key="k2")
    assert outcomes == [503, 500, 200]
    assert receiver.count_by_id() == {"k1": 3, "k2": 2}
    assert receiver.delivered_ids() == {"k1"}
    with pytest.raises(TimeoutError, match=r"5 requests .*'k2' -> 400"):
        await receiver.wait_for(lambda r: len(r.received) > 5, timeout=0.05)


async def test_receiver_runs_as_a_process(channel: WebhookChannel) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.receiver",
        "--port",
        "0",
        "--secret",
        SECRET,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    try:
        ready = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
        assert ready.startswith(b"READY ")
        await send(channel, f"http://127.0.0.1:{int(ready.split()[1])}/p", key="proc-1")
    finally:
        proc.terminate()
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    stats = json.loads(out.decode().split("STATS ", 1)[1])
    assert stats == {"received": 1, "delivered": 1, "duplicates": 0, "statuses": {"200": 1}}


async def test_a_receivers_cookies_are_never_sent_back(channel: WebhookChannel) -> None:
    seen: list[str | None] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        resp = web.Response(status=200)
        resp.set_cookie("session", "from-the-receiver")
        return resp

    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        for i in range(2):
            # a host name, not an IP: aiohttp's default jar refuses cookies from IP addresses
            await send(channel, f"http://localhost:{port}/hook", key=f"c{i}")
    finally:
        await runner.cleanup()
    assert seen == [None, None]  # each POST stands alone: no cookie jar
