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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    max_segments: int = Field(default=3, ge=1, le=10)


class DispatchCfg(BaseModel):
    model_config = _Strict
    concurrency: int = Field(default=64, ge=1, le=2048)
    lease_seconds: float = Field(default=60.0, gt=0)
    backoff_initial: float = Field(default=1.0, gt=0)
    backoff_max: float = Field(default=300.0, gt=0)
    grace_seconds: float = Field(default=10.0, ge=0)


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


class ChannelsCfg(BaseModel):
    model_config = _Strict
    webhook: WebhookCfg = WebhookCfg()
    twilio: TwilioCfg = TwilioCfg()
    # third-party adapters, found through the `gateway.channels` entry-point group
    plugins: dict[str, PluginCfg] = Field(default_factory=dict)


class Config(BaseModel):
    model_config = _Strict
    data_dir: str = "./var"
    log_format: Literal["auto", "json", "console"] = "auto"
    server: ServerCfg = ServerCfg()
    store: StoreCfg = StoreCfg()
    auth: AuthCfg = AuthCfg()
    roster: RosterCfg = RosterCfg()
    policy: PolicyCfg = PolicyCfg()
    sms: SmsCfg = SmsCfg()
    dispatch: DispatchCfg = DispatchCfg()
    channels: ChannelsCfg = ChannelsCfg()
    sandbox: SandboxCfg = SandboxCfg()
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
