"""Approved-template mapping for domestic (Aliyun) SMS and voice, and its config-time check.

Mainland providers send only pre-approved templates: the gateway fills the template's variables
instead of sending its own text. `channels.aliyun.templates` (SMS) and `tts_templates` (voice) map
a message kind to a template; the most specific key wins: "warning.issued:orange", then
"warning.issued", then "*". Each variable is a `str.format` pattern over the context keys below,
e.g. `{level: "{lv}", start: "{start}", unit: "{unit_name}"}`.

Variables are capped at 35 characters for notification templates
(https://help.aliyun.com/zh/sms/user-guide/sms-template-specifications), so longer values are
clipped (with "…"); links are allowed only in templates marked `allow_url` (most forbid them).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from typing import Any

from gateway.config import AliyunTemplateCfg, Config
from gateway.events import EventType, Level
from gateway.policy import Policy

# What a variable pattern may use: the renderer's event context plus per-unit values.
CONTEXT_KEYS = frozenset({
    "signature", "drill", "drill_spoken", "type", "lv", "level_name", "roman", "start", "until_text",
    "headline", "body", "area", "unit_name", "ack", "ack_url", "ack_token", "action", "action_key",
})
URL_KEYS = frozenset({"ack_url"})
_WARNINGS_NEED_LEVEL = {t for t in EventType if t.value.startswith("warning.") and t is not EventType.WARNING_LIFTED}


def keys_for(event_type: str, level: str | None) -> list[str]:
    """Mapping keys to try, most specific first."""
    return ([f"{event_type}:{level}"] if level else []) + [event_type, "*"]


def resolve(templates: Mapping[str, AliyunTemplateCfg], event_type: str, level: str | None
            ) -> AliyunTemplateCfg | None:
    """The template for a message kind, or None when nothing maps it."""
    return next((templates[k] for k in keys_for(event_type, level) if k in templates), None)


def fill(tmpl: AliyunTemplateCfg, context: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The template's variables filled from `context`, and the names of those clipped to length.

    Raises:
        KeyError: a pattern names a key missing from `context` (check_template_mapping prevents it).
    """
    values: dict[str, str] = {}
    clipped: list[str] = []
    for name, pattern in tmpl.params.items():
        value = pattern.format_map({k: "" if v is None else v for k, v in context.items()})
        if len(value) > tmpl.max_param_chars:
            value = value[: tmpl.max_param_chars - 1] + "…"
            clipped.append(name)
        values[name] = value
    return values, clipped


def rendered_text(tmpl: AliyunTemplateCfg, sign_name: str, values: Mapping[str, str]) -> str | None:
    """The message as the handset shows it (【sign】+text), when the template text is configured."""
    if tmpl.text is None:
        return None
    text = tmpl.text
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    return f"【{sign_name}】{text}"


def _fields(pattern: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(pattern) if f}


def _kinds(policy: Policy) -> dict[tuple[str, str | None], dict[str, list[str]]]:
    """(type, level) -> channel -> policy rules sending it. Events naming their own audience
    use the matching rules' channels, or override_channels when no rule matches."""
    out: dict[tuple[str, str | None], dict[str, list[str]]] = {}
    for t in EventType:
        levels: list[str | None] = [lv.value for lv in Level]
        if t not in _WARNINGS_NEED_LEVEL:
            levels.append(None)
        for lv in levels:
            chans: dict[str, list[str]] = {}
            for r in policy.model.rules:
                w = r.when
                if (w.types and t not in w.types) or (w.levels and (lv is None or lv not in w.levels)):
                    continue
                for c in r.channels:
                    chans.setdefault(c, []).append(r.name)
            if not chans:
                for c in policy.model.override_channels:
                    chans.setdefault(c, []).append("override_channels")
            out[(t.value, lv)] = chans
    return out


def aliyun_kinds(cfg: Config) -> set[str]:
    """The channel kinds ('sms', 'voice') Aliyun carries under this config."""
    ali = cfg.channels.aliyun
    fo = cfg.channels.failover
    kinds = set()
    for kind, chain in (("sms", fo.sms), ("voice", fo.voice)):
        if any(p.provider == "aliyun" for p in chain) or (ali.enabled and not chain):
            kinds.add(kind)
    return kinds


def _check_patterns(section: str, templates: Mapping[str, AliyunTemplateCfg], prefix: str) -> list[str]:
    problems = []
    for key, t in templates.items():
        where = f"channels.aliyun.{section}[{key!r}]"
        if not t.code.startswith(prefix):
            problems.append(f"{where}: code {t.code} is not a {prefix}... template")
        for name, pattern in t.params.items():
            try:
                used = _fields(pattern)
            except ValueError as exc:
                problems.append(f"{where}.params.{name}: bad pattern {pattern!r}: {exc}")
                continue
            unknown = used - CONTEXT_KEYS
            if unknown:
                problems.append(f"{where}.params.{name}: unknown {sorted(unknown)}; known: {sorted(CONTEXT_KEYS)}")
            if used & URL_KEYS and not t.allow_url:
                problems.append(f"{where}.params.{name}: a link in a variable needs allow_url: true "
                                "(most templates forbid URLs; use ack_token after a fixed link prefix)")
    return problems


def check_template_mapping(cfg: Config, policy: Policy) -> list[str]:
    """Every event type/level the policy can send by SMS or voice through Aliyun must map to an
    approved template; returns the problems, each naming what is missing and where to add it."""
    ch = cfg.channels
    problems: list[str] = []
    for kind, chain in (("sms", ch.failover.sms), ("voice", ch.failover.voice)):
        for p in chain:
            if p.provider == "twilio" and not ch.twilio.enabled:
                problems.append(f"channels.failover.{kind}: provider twilio needs channels.twilio.enabled")
            if p.provider == "aliyun" and not ch.aliyun.enabled:
                problems.append(f"channels.failover.{kind}: provider aliyun needs channels.aliyun.enabled")
    kinds = aliyun_kinds(cfg)
    if not kinds:
        return problems
    problems += _check_patterns("templates", ch.aliyun.templates, "SMS_")
    problems += _check_patterns("tts_templates", ch.aliyun.tts_templates, "TTS_")
    if "voice" in kinds and not ch.aliyun.called_show_number:
        problems.append("channels.aliyun.called_show_number: required for Aliyun voice calls")
    missing: dict[tuple[str, str, str], list[tuple[str | None, list[str]]]] = {}
    for (etype, level), chans in _kinds(policy).items():
        # an SMS may become a call (landline-only units, fallback on a failed SMS)
        wanted = [("sms", "templates", chans.get("sms", []))] if "sms" in kinds else []
        if "voice" in kinds:
            wanted.append(("voice", "tts_templates", chans.get("voice", []) + chans.get("sms", [])))
        for kind, section, rules in wanted:
            t = resolve(getattr(ch.aliyun, section), etype, level) if rules else None
            name = f"{etype}:{level}" if level else etype
            if rules and t is None:
                missing.setdefault((section, kind, etype), []).append((level, rules))
            elif rules and t is not None and not t.approved:
                problems.append(f"channels.aliyun.{section}: template {t.code} for {name} is not approved yet "
                                f"{_why(kind, rules)}")
    return problems + [_missing(section, kind, etype, found) for (section, kind, etype), found in missing.items()]


def _why(kind: str, rules: Iterable[str]) -> str:
    how = "by SMS" if kind == "sms" else "by voice, or as the voice fallback of an SMS,"
    return f"(sent {how} through policy rules: {', '.join(sorted(set(rules)))})"


def _missing(section: str, kind: str, etype: str, found: list[tuple[str | None, list[str]]]) -> str:
    """One line per event type: the levels without a template and the keys that would cover them."""
    levels = [lv for lv, _ in found if lv]
    names = ", ".join(f"{etype}:{lv}" for lv in levels) + (", " if levels and len(levels) < len(found) else "")
    names += etype if len(levels) < len(found) else ""
    keys = [f"{etype}:{lv}" for lv in levels] if len(levels) == 1 and len(found) == 1 else []
    add = " or ".join(repr(k) for k in [*keys, etype, "*"])
    rules = [r for _, rs in found for r in rs]
    return f"channels.aliyun.{section}: no template for {names} {_why(kind, rules)}; add {add}"
