"""Run the sandbox standalone: `python -m gateway.sandbox --port 8099 --account-sid AC... --auth-token T`.

Prints `READY <port>` on stdout once listening, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
from collections.abc import Sequence

from gateway.sandbox.config import FailRule, SandboxConfig
from gateway.sandbox.server import Sandbox


def _pair(text: str) -> tuple[str, str]:
    number, sep, value = text.partition("=")
    if not sep or not number or not value:
        raise argparse.ArgumentTypeError(f"expected NUMBER=VALUE, got {text!r}")
    return number, value


def _fail(text: str) -> tuple[str, str]:
    number, rule = _pair(text)
    try:
        FailRule.parse(rule)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return number, rule


def _reject(text: str) -> tuple[str, int]:
    number, code = _pair(text)
    if not code.isdigit():
        raise argparse.ArgumentTypeError(f"expected NUMBER=CODE, got {text!r}")
    return number, int(code)


def build_parser() -> argparse.ArgumentParser:
    """The command line; every flag maps onto a SandboxConfig field."""
    p = argparse.ArgumentParser(prog="python -m gateway.sandbox", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed as READY <port>)")
    p.add_argument("--account-sid", default=SandboxConfig.account_sid)
    p.add_argument("--auth-token", default="sandbox-auth-token")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before answering")
    p.add_argument("--callback-delay", type=float, default=0.01, help="seconds between status steps")
    p.add_argument("--rate-429", type=float, default=0.0)
    p.add_argument("--rate-500", type=float, default=0.0)
    p.add_argument("--rate-timeout", type=float, default=0.0)
    p.add_argument("--timeout-seconds", type=float, default=30.0, help="how long a timeout fault stalls")
    p.add_argument("--retry-after", default=None, help="Retry-After value sent with 429s")
    p.add_argument("--max-per-second", type=int, default=None, help="429 above this many requests/s per kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--auto-press", action="store_true", help="every answered call presses 1")
    p.add_argument("--press", action="append", default=[], metavar="NUMBER", help="calls to NUMBER press 1")
    p.add_argument(
        "--fail", action="append", type=_fail, default=[], metavar="NUMBER=STATUS[:CODE]",
        help="final status for NUMBER: undelivered, failed, busy, no-answer, canceled",
    )  # fmt: skip
    p.add_argument(
        "--reject", action="append", type=_reject, default=[], metavar="NUMBER=CODE",
        help="answer creates to NUMBER with 400 and this Twilio error code",
    )  # fmt: skip
    p.add_argument("--call-duration", type=int, default=12)
    return p


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    """Build the config from parsed flags.

    Raises:
        ValueError: a value is out of range.
    """
    return SandboxConfig(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        latency=args.latency,
        callback_delay=args.callback_delay,
        rate_429=args.rate_429,
        rate_500=args.rate_500,
        rate_timeout=args.rate_timeout,
        timeout_seconds=args.timeout_seconds,
        retry_after=args.retry_after,
        max_per_second=args.max_per_second,
        rng=random.Random(args.seed),
        auto_press=args.auto_press,
        auto_press_numbers=frozenset(args.press),
        fail_numbers=dict(args.fail),
        reject_numbers=dict(args.reject),
        call_duration=args.call_duration,
    )


async def serve(config: SandboxConfig, host: str, port: int) -> None:
    """Run until SIGINT/SIGTERM, printing READY <port> once listening."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sandbox = Sandbox(config)
    await sandbox.start(host, port)
    try:
        print(f"READY {sandbox.port}", flush=True)
        await stop.wait()
    finally:
        await sandbox.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
