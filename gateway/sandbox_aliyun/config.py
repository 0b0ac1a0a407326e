"""What the Aliyun fake accepts, and which faults it injects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class AliyunSandboxConfig:
    """Mutable on purpose: tests change faults while the fake runs.

    `templates` / `tts_templates` map approved codes to their variable names (None: any code is
    approved). `reject_numbers` answer SendSms/SingleCallByTts with an error code at once;
    `undeliverable` gives an SMS a failed receipt with that carrier code; `call_results` gives a
    call that VoiceReport status code (default 200000, heard to the end). Numbers are as sent
    (11 digits, or 0-prefixed landlines).
    """

    access_key_id: str = "LTAI-sandbox"
    access_key_secret: str = field(default="sandbox-secret", repr=False)
    verify_signature: bool = True
    sign_names: frozenset[str] = frozenset({"泽州县人民政府"})
    templates: Mapping[str, tuple[str, ...]] | None = None
    tts_templates: Mapping[str, tuple[str, ...]] | None = None
    show_numbers: frozenset[str] | None = None
    # Notification template variables: 1..35 characters each
    # (https://help.aliyun.com/zh/sms/user-guide/sms-template-specifications).
    max_param_chars: int = 35
    reject_numbers: dict[str, str] = field(default_factory=dict)
    undeliverable: dict[str, str] = field(default_factory=dict)
    call_results: dict[str, str] = field(default_factory=dict)
    rate_500: float = 0.0
    rate_throttle: float = 0.0
    receipt_delay: float = 0.05
    # push receipts (SmsReport / VoiceReport, JSON arrays) to these URLs; None: pull only
    sms_report_url: str | None = None
    voice_report_url: str | None = None
    push_interval: float = 0.05
