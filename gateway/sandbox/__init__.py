"""A standalone Twilio-compatible sandbox server for tests, benchmarks and demos.

Standalone on purpose: it imports nothing from the rest of `gateway`, so it can be run next to
any build of the gateway (`python -m gateway.sandbox --help`).
"""

from __future__ import annotations

from gateway.sandbox.callbacks import CallbackRecord, sign
from gateway.sandbox.config import FailRule, SandboxConfig
from gateway.sandbox.lifecycle import NoGather, parse_twiml
from gateway.sandbox.server import Sandbox
from gateway.sandbox.stats import Outcome, SandboxStats
from gateway.sandbox.wire import Record, count_segments, mask

__all__ = [
    "CallbackRecord",
    "FailRule",
    "NoGather",
    "Outcome",
    "Record",
    "Sandbox",
    "SandboxConfig",
    "SandboxStats",
    "count_segments",
    "mask",
    "parse_twiml",
    "sign",
]
