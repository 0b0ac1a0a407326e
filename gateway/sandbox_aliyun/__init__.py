"""A standalone Alibaba Cloud SMS/voice fake for tests, benchmarks and demos.

Standalone on purpose: it imports nothing from the rest of `gateway`, so it runs next to any
build of the gateway, and the real Alibaba Cloud SDKs talk to it through their endpoint setting.
"""

from __future__ import annotations

from gateway.sandbox_aliyun.config import AliyunSandboxConfig
from gateway.sandbox_aliyun.engine import CallRecord, PushRecord, SmsRecord
from gateway.sandbox_aliyun.server import AliyunSandbox

__all__ = ["AliyunSandbox", "AliyunSandboxConfig", "CallRecord", "PushRecord", "SmsRecord"]
