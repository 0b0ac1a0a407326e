"""Config for daemons that send through the Aliyun fake (and, for failover, the Twilio sandbox)."""

from __future__ import annotations

import copy
from typing import Any

from gateway.sandbox_aliyun import AliyunSandbox, AliyunSandboxConfig
from tests.support.receiver import Receiver

AK_ID, AK_SECRET, PUSH_TOKEN = "LTAI5tTestKeyId0001", "aliyun-test-secret-0001", "push-token-0123456789abcdef"
ENV = {"ALIBABA_CLOUD_ACCESS_KEY_ID": AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": AK_SECRET,
       "GATEWAY_ALIYUN_RECEIPT_TOKEN": PUSH_TOKEN}
SHOW_NUMBER = "03563951234"
ORANGE_SMS = "SMS_465301001"
ORANGE_TTS = "TTS_465302001"
ANY_SMS, ANY_TTS = "SMS_465301999", "TTS_465302999"
# The approved orange template's text (for segment counting); a fixed link prefix, the token a variable.
ORANGE_TEXT = ("县指挥部定于${start}起启动${level}重污染天气预警，${until}。请落实本单位响应措施"
               "${ack}内点击 https://hb.zezhou.gov.cn/a/${token} 确认。")
TEMPLATES: dict[str, Any] = {
    "warning.issued:orange": {"code": ORANGE_SMS, "text": ORANGE_TEXT, "params": {
        "level": "{drill}{lv}", "start": "{start}", "until": "{until_text}", "ack": "，{ack}", "token": "{ack_token}"}},
    "*": {"code": ANY_SMS, "params": {"kind": "{drill}重污染天气应急通知"}},
}
TTS_TEMPLATES: dict[str, Any] = {
    "warning.issued:orange": {"code": ORANGE_TTS, "params": {"unit": "{unit_name}", "level": "{lv}",
                                                             "start": "{start}"}},
    "*": {"code": ANY_TTS, "params": {"kind": "{drill_spoken}重污染天气应急通知"}},
}
APPROVED_SMS = {ORANGE_SMS: ("level", "start", "until", "ack", "token"), ANY_SMS: ("kind",)}
APPROVED_TTS = {ORANGE_TTS: ("unit", "level", "start"), ANY_TTS: ("kind",)}


def fake_config(daemon_url: str | None = None, **kw: Any) -> AliyunSandboxConfig:
    """The fake with our credentials and templates; pushes to `daemon_url` when given."""
    push = {}
    if daemon_url is not None:
        push = {"sms_report_url": f"{daemon_url}/v1/callbacks/aliyun/{PUSH_TOKEN}/sms-report",
                "voice_report_url": f"{daemon_url}/v1/callbacks/aliyun/{PUSH_TOKEN}/voice-report"}
    base: dict[str, Any] = {"access_key_id": AK_ID, "access_key_secret": AK_SECRET, "templates": APPROVED_SMS,
                            "tts_templates": APPROVED_TTS, "show_numbers": frozenset({SHOW_NUMBER}),
                            "receipt_delay": 0.05, **push}
    return AliyunSandboxConfig(**{**base, **kw})


def aliyun_config(fake: AliyunSandbox, receiver: Receiver, **aliyun: Any) -> dict[str, Any]:
    """A daemon config with Aliyun as the only SMS/voice provider."""
    hook = [{"url": receiver.url("/hook/{unit_id}")}]
    return {
        "roster": {"extra_contacts": {u: hook for u in (
            "county_media_centre", "china_mobile_zezhou", "china_unicom_zezhou", "china_telecom_zezhou",
            "zezhou_ecology_branch")}},
        "channels": {"webhook": {"enabled": True, "timeout": 2.0},
                     "aliyun": {"enabled": True, "endpoint": fake.base_url, "voice_endpoint": fake.base_url,
                                "called_show_number": SHOW_NUMBER, "templates": copy.deepcopy(TEMPLATES),
                                "tts_templates": copy.deepcopy(TTS_TEMPLATES), "sms_rate": 50, "voice_rate": 50,
                                "timeout": 2.0, "query_interval": 0, **aliyun}},
        "dispatch": {"backoff_initial": 0.1, "backoff_max": 1.0},
        "sandbox": {"enabled": False},
    }
