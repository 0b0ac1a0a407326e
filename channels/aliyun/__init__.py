"""Alibaba Cloud SMS (Dysmsapi SendSms) and voice notification (Dyvmsapi SingleCallByTts) channels.

Wiring: build one `AliyunApi(config)` and pass it to both `AliyunSms` and `AliyunVoice`. The
gateway puts the approved template code and parameters into `Message.meta` (see META_* below).
"""

from __future__ import annotations

from channels.aliyun.client import AliyunApi, AliyunConfig
from channels.aliyun.errors import classify, classify_code
from channels.aliyun.receipts import CallReceipt, SmsReceipt, parse_sms_report, parse_voice_report
from channels.aliyun.sms import META_PARAMS, META_SEGMENTS, META_TEMPLATE, AliyunSms, domestic_number, template_params
from channels.aliyun.voice import META_TTS_PARAMS, META_TTS_TEMPLATE, AliyunVoice, called_number

__all__ = [
    "META_PARAMS",
    "META_SEGMENTS",
    "META_TEMPLATE",
    "META_TTS_PARAMS",
    "META_TTS_TEMPLATE",
    "AliyunApi",
    "AliyunConfig",
    "AliyunSms",
    "AliyunVoice",
    "CallReceipt",
    "SmsReceipt",
    "called_number",
    "classify",
    "classify_code",
    "domestic_number",
    "parse_sms_report",
    "parse_voice_report",
    "template_params",
]
