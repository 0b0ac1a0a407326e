"""Daemon configuration: YAML validated with pydantic, then environment, then CLI flags.

With no file, the embedded default (`defaults/config.yaml`) runs everything on this machine:
SQLite under ./var, the Zezhou roster and policy, the Twilio sandbox and a local webhook sink.
Secrets come from the environment or files under the data dir, never from the repo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

_Strict = ConfigDict(extra="forbid")


class ConfigError(ValueError):
    """The configuration is unreadable or invalid; `messages` lists every problem."""

    def __init__(self, messages: list[str]):
        self.messages = messages
        super().__init__("; ".join(messages))


class ServerCfg(BaseModel):
    model_config = _Strict
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    public_base_url: str | None = None  # what Twilio and ack links call; default http://host:port
    max_body_bytes: int = Field(default=1_048_576, ge=1024)


class StoreCfg(BaseModel):
    model_config = _Strict
    url: str | None = None  # sqlite:///path or postgresql://...; default sqlite under data_dir
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    migrate: bool = True


class AuthCfg(BaseModel):
    model_config = _Strict
    tokens_file: str | None = None


class RosterCfg(BaseModel):
    model_config = _Strict
    path: str | None = None
    # extra contacts by unit id ("*" = every unit), e.g. webhook URLs of media platforms;
    # "{unit_id}" and "{base_url}" are substituted.
    extra_contacts: dict[str, list[dict[str, str]]] = Field(default_factory=dict)


class PolicyCfg(BaseModel):
    model_config = _Strict
    path: str | None = None


class SmsCfg(BaseModel):
    model_config = _Strict
    signature: str = "【泽州县人民政府】"
    max_segments: int = Field(default=2, ge=1, le=10)  # every SMS is fitted to it (render.py)


class DispatchCfg(BaseModel):
    model_config = _Strict
    concurrency: int = Field(default=64, ge=1, le=2048)
    lease_seconds: float = Field(default=60.0, gt=0)
    # retry waits: initial * base**(n-1) + jitter up to `initial`, at most backoff_max
    backoff_initial: float = Field(default=0.2, gt=0)
    backoff_base: float = Field(default=3.0, ge=1)
    backoff_max: float = Field(default=300.0, gt=0)
    grace_seconds: float = Field(default=10.0, ge=0)
    reminder_check_seconds: float = Field(default=30.0, gt=0)  # how often due reminders are looked for


class WebhookCfg(BaseModel):
    model_config = _Strict
    enabled: bool = True
    secret_env: str = "GATEWAY_WEBHOOK_SECRET"  # else <data-dir>/webhook.secret, generated once
    per_endpoint: int = Field(default=16, ge=1)
    timeout: float = Field(default=10.0, gt=0)
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_cooldown: float = Field(default=30.0, gt=0)


class TwilioCfg(BaseModel):
    model_config = _Strict
    enabled: bool = False
    base_url: str | None = None  # None: api.twilio.com; the sandbox sets its own
    # credentials: TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN, or these files (re-read on SIGHUP)
    account_sid_file: str | None = None
    auth_token_file: str | None = None
    from_number: str = "+15005550006"
    sms_rate: float = Field(default=10.0, gt=0)  # messages per second per sender
    voice_rate: float = Field(default=1.0, gt=0)  # calls per second per account
    timeout: float = Field(default=15.0, gt=0)
    voice: str = "Polly.Zhiyu"
    language: str = "cmn-CN"
    receipt_timeout: float = Field(default=600.0, gt=0)  # `sent` this long without a receipt: follow up
    voice_retry_interval: float = Field(default=120.0, ge=0)  # busy / no-answer: call again after


class SandboxCfg(BaseModel):
    model_config = _Strict
    enabled: bool = False
    port: int = Field(default=0, ge=0, le=65535)
    auto_press: bool = True
    callback_delay: float = 0.05


class PluginCfg(BaseModel):
    model_config = _Strict
    entry_point: str | None = None  # name in the gateway.channels group; default: the key
    options: dict[str, Any] = Field(default_factory=dict)  # constructor keyword arguments
    per_endpoint: int = Field(default=16, ge=1)
    timeout: float = Field(default=10.0, gt=0)
    rate: float | None = Field(default=None, gt=0)


class AliyunTemplateCfg(BaseModel):
    """One approved Aliyun template: its code and how each variable is filled (a str.format
    pattern over the message context, see gateway/templates_cn.py)."""

    model_config = _Strict
    code: str = Field(pattern=r"^(SMS|TTS)_\d+$")
    params: dict[str, str] = Field(default_factory=dict)
    approved: bool = True  # false while the template is still under review: check-config fails
    text: str | None = None  # the approved text with ${var}s, to count segments (sign included)
    max_param_chars: int = Field(default=35, ge=1, le=500)  # per-variable cap of notification templates
    allow_url: bool = False  # most templates forbid links in variables


class AliyunCfg(BaseModel):
    """Alibaba Cloud SMS (Dysmsapi) and voice notifications (Dyvmsapi), issue 8."""

    model_config = _Strict
    enabled: bool = False
    endpoint: str = "https://dysmsapi.aliyuncs.com"  # SMS; http://127.0.0.1:PORT for the local fake
    voice_endpoint: str = "https://dyvmsapi.aliyuncs.com"
    access_key_id_env: str = "ALIBABA_CLOUD_ACCESS_KEY_ID"
    access_key_secret_env: str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
    sign_name: str = Field(default="泽州县人民政府", min_length=2, max_length=16)
    # "type:level", "type" or "*" -> template; the most specific key wins
    templates: dict[str, AliyunTemplateCfg] = Field(default_factory=dict)
    tts_templates: dict[str, AliyunTemplateCfg] = Field(default_factory=dict)
    called_show_number: str | None = None
    play_times: int = Field(default=2, ge=1, le=3)
    sms_rate: float = Field(default=20.0, gt=0)
    voice_rate: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=10.0, gt=0)
    query_interval: float = Field(default=30.0, ge=0)  # QuerySendDetails pull; 0 disables
    query_rate: float = Field(default=10.0, gt=0)  # QuerySendDetails calls per second, at most
    receipt_token_env: str | None = "GATEWAY_ALIYUN_RECEIPT_TOKEN"  # push URL token; None: no push


class FailoverProviderCfg(BaseModel):
    model_config = _Strict
    provider: Literal["aliyun", "twilio"]
    weight: int = Field(default=100, ge=0)


class FailoverCfg(BaseModel):
    """Providers per channel kind, highest weight first; demotion thresholds (channels/failover.py)."""

    model_config = _Strict
    sms: list[FailoverProviderCfg] = Field(default_factory=list)
    voice: list[FailoverProviderCfg] = Field(default_factory=list)
    error_threshold: int = Field(default=5, ge=1)
    error_window: float = Field(default=60.0, gt=0)
    cooldown: float = Field(default=60.0, gt=0)
    misconfigured_cooldown: float = Field(default=300.0, gt=0)
    slow_after: float = Field(default=300.0, gt=0)
    slow_ratio: float = Field(default=0.15, gt=0, le=1)
    min_receipts: int = Field(default=20, ge=1)


class ChannelsCfg(BaseModel):
    model_config = _Strict
    webhook: WebhookCfg = WebhookCfg()
    twilio: TwilioCfg = TwilioCfg()
    aliyun: AliyunCfg = AliyunCfg()
    failover: FailoverCfg = FailoverCfg()
    # third-party adapters, found through the `gateway.channels` entry-point group
    plugins: dict[str, PluginCfg] = Field(default_factory=dict)


LevelName = Literal["yellow", "orange", "red", "blue"]

# Colour words, Chinese names and response grades (Ⅲ/Ⅱ/Ⅰ级) as found in CAP <parameter>
# values and Alertmanager `level` labels; matched case-insensitively (gateway/cap.py).
_LEVEL_WORDS: dict[str, LevelName] = {
    **dict.fromkeys(["red", "红色", "红", "Ⅰ级", "Ⅰ", "I级", "一级"], "red"),
    **dict.fromkeys(["orange", "橙色", "橙", "Ⅱ级", "Ⅱ", "II级", "二级"], "orange"),
    **dict.fromkeys(["yellow", "黄色", "黄", "Ⅲ级", "Ⅲ", "III级", "三级"], "yellow"),
    **dict.fromkeys(["blue", "蓝色", "蓝", "Ⅳ级", "Ⅳ", "IV级", "四级"], "blue"),
}

_SEVERITY_LEVELS: dict[str, LevelName] = {"Extreme": "red", "Severe": "orange", "Moderate": "yellow", "Minor": "blue"}


class CapCfg(BaseModel):
    """CAP 1.2 in and out (deploy/cap/README.md)."""

    model_config = _Strict
    # GB/T 35965.1 identifier ZZZZZZDDDUUUXX_YYYYMMDDhhmmss_N: GB/T 2260 area code, sector code,
    # unit digits. 140525 is Zezhou County.
    area_code: str = Field(default="140525", pattern=r"^\d{6}$")
    sector_code: str = Field(default="000", pattern=r"^\d{3}$")
    unit_code: str = Field(default="00000", pattern=r"^\d{5}$")
    sender: str = Field(default="zzhpw@140525.gov.cn", pattern=r"^[^\s,<&]+$")  # CAP forbids these
    sender_name: str = "泽州县重污染天气应急指挥部"
    area_name: str = "泽州县"  # areas equal to this get the area_code as a geocode
    level_parameters: list[str] = Field(default_factory=lambda: [
        "level", "color", "colour", "颜色", "预警颜色", "预警级别", "预警等级", "级别"])
    level_values: dict[str, LevelName] = Field(default_factory=lambda: dict(_LEVEL_WORDS))
    # CAP <severity> (Extreme, Severe, Moderate, Minor) when no colour parameter is present
    severity_levels: dict[str, LevelName] = Field(default_factory=lambda: dict(_SEVERITY_LEVELS))
    # Our remit: GB/T 2260 geocodes (a province or city code covers us too) or area names; empty = any
    areas: list[str] = Field(default_factory=list)
    # CAP categories, eventCode values or words of <event> we act on; empty = any
    event_kinds: list[str] = Field(default_factory=list)
    # PEM files with the signers' certificates: with any, an enveloped XML signature must verify
    trusted_certs: list[str] = Field(default_factory=list)
    require_signature: bool = False  # unsigned CAP is refused (needs trusted_certs)
    # CAP <sender> values whose warnings need no sign-off here (签发): the city platform decided
    # already. Pair it with trusted_certs and require_signature, or anyone can claim the name.
    trusted_senders: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _signatures(self) -> CapCfg:
        if self.require_signature and not self.trusted_certs:
            raise ValueError("require_signature needs trusted_certs to verify against")
        return self


class CapFeedCfg(BaseModel):
    """An Atom or RSS index of CAP messages that the gateway polls (a warning platform's feed)."""

    model_config = _Strict
    url: str = Field(pattern=r"^https?://")
    interval: float = Field(default=60.0, ge=0.05)  # seconds between polls
    sender: str = Field(min_length=1, max_length=100)  # who the feed's messages are recorded as from
    timeout: float = Field(default=10.0, gt=0)


class IntakeCfg(BaseModel):
    model_config = _Strict
    cap_feeds: list[CapFeedCfg] = Field(default_factory=list)


class AlertRuleCfg(BaseModel):
    """Which Alertmanager alerts become events, and how."""

    model_config = _Strict
    alertnames: list[str] = Field(default_factory=lambda: ["AQIHigh"], min_length=1)
    match: dict[str, str] = Field(default_factory=dict)  # further label equalities
    kind: Literal["warning", "advisory"] = "warning"
    level_label: str = "level"  # label, else annotation, holding the colour
    default_level: LevelName | None = "yellow"  # None: an alert without the label is rejected
    status: Literal["actual", "exercise", "test"] = "actual"
    area_label: str = "area"  # label, else annotation; default the event's default area
    headline_annotation: str = "summary"
    body_annotation: str = "description"
    # released without waiting for an HQ leader's sign-off (签发), recorded as released by the rule
    auto_release: bool = False


class AlertmanagerCfg(BaseModel):
    model_config = _Strict
    rules: list[AlertRuleCfg] = Field(default_factory=lambda: [AlertRuleCfg()])


class Config(BaseModel):
    model_config = _Strict
    data_dir: str = "./var"
    log_format: Literal["auto", "json", "console"] = "auto"
    # debug adds one line per successful delivery attempt (failures are logged at any level)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    server: ServerCfg = ServerCfg()
    store: StoreCfg = StoreCfg()
    auth: AuthCfg = AuthCfg()
    roster: RosterCfg = RosterCfg()
    policy: PolicyCfg = PolicyCfg()
    sms: SmsCfg = SmsCfg()
    dispatch: DispatchCfg = DispatchCfg()
    channels: ChannelsCfg = ChannelsCfg()
    sandbox: SandboxCfg = SandboxCfg()
    cap: CapCfg = CapCfg()
    intake: IntakeCfg = IntakeCfg()
    alertmanager: AlertmanagerCfg = AlertmanagerCfg()
    embedded_default: bool = False

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{Path(self.data_dir) / 'gateway.db'}"

    @property
    def base_url(self) -> str:
        if self.server.public_base_url:
            return self.server.public_base_url.rstrip("/")
        host = "127.0.0.1" if self.server.host in ("0.0.0.0", "::", "") else self.server.host
        return f"http://{host}:{self.server.port}"


def _resolve_relative(data: dict[str, Any], base: Path) -> None:
    for section, key in (("roster", "path"), ("policy", "path"), ("auth", "tokens_file")):
        sec = data.get(section)
        if isinstance(sec, dict) and isinstance(sec.get(key), str) and not Path(sec[key]).is_absolute():
            sec[key] = str(base / sec[key])
    cap = data.get("cap")
    if isinstance(cap, dict) and isinstance(cap.get("trusted_certs"), list):
        cap["trusted_certs"] = [str(base / p) if isinstance(p, str) and not Path(p).is_absolute() else p
                                for p in cap["trusted_certs"]]


def load_config(path: str | Path | None = None, *, overrides: dict[str, Any] | None = None) -> Config:
    """Load the file (or the embedded default), apply environment and flag overrides.

    Raises:
        ConfigError: unreadable file, YAML errors or invalid values, all listed.
    """
    embedded = path is None
    src = Path(path) if path else Path(__file__).parent / "defaults" / "config.yaml"
    try:
        data = yaml.safe_load(src.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError([f"{src}: cannot read: {exc.strerror}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{src}: YAML syntax error: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError([f"{src}: the configuration must be a mapping"])
    if not embedded:
        _resolve_relative(data, src.parent)
    data["embedded_default"] = embedded
    env = os.environ
    server = data.setdefault("server", {})
    if env.get("GATEWAY_HOST"):
        server["host"] = env["GATEWAY_HOST"]
    if env.get("GATEWAY_PORT"):
        server["port"] = env["GATEWAY_PORT"]
    if env.get("GATEWAY_DATA_DIR"):
        data["data_dir"] = env["GATEWAY_DATA_DIR"]
    if env.get("GATEWAY_STORE_URL"):
        data.setdefault("store", {})["url"] = env["GATEWAY_STORE_URL"]
    if env.get("GATEWAY_TOKENS_FILE"):
        data.setdefault("auth", {})["tokens_file"] = env["GATEWAY_TOKENS_FILE"]
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        section, _, name = key.rpartition(".")
        (data.setdefault(section, {}) if section else data)[name] = value
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            [f"{src}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        ) from exc
