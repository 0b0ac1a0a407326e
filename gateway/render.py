"""Message rendering: Chinese text per event type, level and recipient, for SMS, voice and webhooks.

Every message is built from parts (docs in README, "Messages"): a fixed lead (signature, drill
mark, what the HQ decided, level, time), the unit's own action at this level, the measures routed
to it, the free text (headline, body), and the acknowledgement ask with its short link. The SMS
fits `sms.max_segments` by construction: the fixed parts always go in, the optional ones only if
they fit, and the free text is cut at a clause boundary with "…" (it stays whole on the notice
page behind the link and in the webhook body). The per-event context is built once and reused for
every unit, so a fan-out to thousands costs a few string joins per unit and channel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from contacts.model import Actions
from gateway.events import Event, EventType, Status
from gateway.wording import BEIJING, LEVELS, cut, day, for_the_ear, spoken, utf16_len, working_days_after, written

__all__ = ["BEIJING", "LEVELS", "Chain", "EventContext", "Fitted", "RenderError", "Renderer", "sms_segments"]

DRILL_MARK = {Status.EXERCISE: "【演练】", Status.TEST: "【测试】", Status.ACTUAL: ""}
DRILL_SPOKEN = {Status.EXERCISE: "演练，演练。", Status.TEST: "测试，测试。", Status.ACTUAL: ""}
MIN_FREE_CHARS = 8  # free text is cut to no fewer characters, else left out of the SMS
VOICE_FREE_CHARS = 150  # free text read out on a call: a listener retains little more
SUMMARY_WORKING_DAYS = 2  # the summary evaluation (总结评估) after a lift, domain.md section 4

# GSM 03.38 basic set; the extension set costs two septets. Anything else forces UCS-2.
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = set("^{}\\[~]|€\f")
_LEVELLED = {EventType.WARNING_ISSUED, EventType.WARNING_UPGRADED, EventType.WARNING_DOWNGRADED,
             EventType.WARNING_EXTENDED}


class RenderError(ValueError):
    """A message cannot be sent as asked (the request wants strict length and the SMS needs a cut)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def sms_segments(text: str) -> int:
    """Segments an SMS needs: GSM-7 160/153, else UCS-2 70/67 (astral chars count 2)."""
    if all(ch in _GSM_BASIC or ch in _GSM_EXT for ch in text):
        units = sum(2 if ch in _GSM_EXT else 1 for ch in text)
        single, multi = 160, 153
    else:
        units = utf16_len(text)
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


def capacity(segments: int) -> int:
    """UCS-2 characters that fit in `segments` SMS segments."""
    return 70 if segments == 1 else 67 * segments


def _span(td: timedelta) -> str:
    mins = int(td.total_seconds() // 60)
    return f"{mins // 60}小时" if mins % 60 == 0 else f"{mins}分钟"


@dataclass(frozen=True, slots=True)
class Chain:
    """What a later step of a chain names of the earlier notices: the level in force before it (the
    level a lift ends) and the chain's first notice (its 文号 and when it took effect)."""

    level: str | None = None
    origin_doc_no: str = ""
    origin_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class EventContext:
    event: Event
    accepted: datetime
    chain: Chain
    values: dict[str, Any]  # the flat values approved-template variables may use (templates_cn)
    event_json: str


@dataclass(frozen=True, slots=True)
class Fitted:
    """An SMS text and what had to be cut or left out to fit the budget."""

    text: str
    segments: int
    cut: tuple[str, ...] = ()


def kind_of(roles: Sequence[str]) -> str:
    """How a unit is addressed: "upward" (a report to the city), "duty" (a duty office: a report to
    pass on to its leaders), or "unit" (an instruction to act)."""
    if "upward" in roles:
        return "upward"
    if "duty_office" in roles or "hq" in roles:
        return "duty"
    return "unit"


class Renderer:
    """Renders SMS, voice and webhook bodies."""

    def __init__(self, *, signature: str = "【泽州县人民政府】", max_sms_segments: int = 2):
        self.signature = signature
        self.max_sms_segments = max_sms_segments

    # --- the event's parts, once per event

    def context(self, event: Event, event_id: str, accepted: datetime, chain: Chain | None = None, *,
                approval: str = "") -> EventContext:
        """`approval` names the sign-off in every message (e.g. 经县指挥部批准), or is empty."""
        chain = chain or Chain()
        level = event.level.value if event.level else None
        if event.type is EventType.WARNING_LIFTED:
            level = chain.level or level
        color, roman, _ = LEVELS.get(level or "", ("", "", ""))
        start = event.valid_from or accepted
        values = {
            "signature": self.signature,
            "drill": DRILL_MARK[event.status],
            "drill_spoken": DRILL_SPOKEN[event.status],
            "approval": f"{approval}，" if approval else "",
            "type": event.type.value,
            "lv": f"{color}（{roman}级）" if color else "",
            "roman": roman,
            "start": written(start),
            "until_text": f"预计{written(event.valid_until)}解除" if event.valid_until else "解除时间另行通知",
            "headline": event.headline,
            "body": event.body,
            "doc_no": event.issued_by.doc_no if event.issued_by else "",
            # which of a unit's action lines this event asks for
            "action_key": "lift" if event.type is EventType.WARNING_LIFTED else level,
            "summary_due": day(working_days_after(start, SUMMARY_WORKING_DAYS)),
        }
        data = event.canonical()
        data["id"] = event_id
        return EventContext(event, accepted, chain, values,
                            json.dumps(data, ensure_ascii=False, separators=(",", ":")))

    @staticmethod
    def action(ctx: EventContext, actions: Actions) -> str:
        """The unit's own action line for this event (its level, or lift); empty when it has none."""
        if not str(ctx.values["type"]).startswith("warning."):
            return ""
        return actions.at(ctx.values["action_key"])

    def _lead(self, ctx: EventContext, *, ear: bool,
              opt: frozenset[str] = frozenset({"kind", "hq", "origin", "doc_no"})) -> str:
        """What the HQ decided, e.g. 县指挥部12月10日12时起发布重污染天气橙色预警，启动Ⅱ级应急响应.
        `opt` names the optional parts to include: "kind" (重污染天气), "hq" (县指挥部), "origin" (the
        date of the notice a lift ends), "doc_no" (the 文号; never spoken)."""
        ev, v = ctx.event, ctx.values
        level = v["action_key"] if ev.type is not EventType.WARNING_LIFTED else ctx.chain.level or (
            ev.level.value if ev.level else None)
        color, roman, numeral = LEVELS.get(level or "", ("", "", ""))
        r = numeral if ear else roman
        when = spoken if ear else written
        start = when(ev.valid_from or ctx.accepted)
        # a signed warning says so where it names the HQ (never left out); else 县指挥部 is optional
        hq = v["approval"] or ("县指挥部" if "hq" in opt else "")
        k = "重污染天气" if "kind" in opt else ""
        no = v["doc_no"] if ev.type is not EventType.WARNING_LIFTED else ctx.chain.origin_doc_no
        docno = f"（{no}）" if "doc_no" in opt and no and not ear else ""
        t = ev.type
        if t is EventType.WARNING_ISSUED:
            return f"{hq}{start}起发布{k}{color}预警{docno}，启动{r}级应急响应"
        if t is EventType.WARNING_UPGRADED:
            return f"{hq}{start}起将{k}预警升级为{color}{docno}，启动{r}级应急响应"
        if t is EventType.WARNING_DOWNGRADED:
            return f"{hq}{start}起将{k}预警调整为{color}{docno}，实行{r}级应急响应"
        if t is EventType.WARNING_EXTENDED:
            until = f"延长至{when(ev.valid_until)}" if ev.valid_until else "延长，解除时间另行通知"
            decided = hq if v["approval"] else hq and hq + "决定"
            return f"{decided}{k}{color}预警{docno}{until}，继续实行{r}级应急响应"
        if t is EventType.WARNING_LIFTED:
            # names the level it ends and the notice that started it
            origin = f"{day(ctx.chain.origin_at)}发布的" if ctx.chain.origin_at and "origin" in opt else ""
            ended = f"，终止{r}级应急响应" if r else "，终止应急响应"
            return f"{hq}{start}起解除{origin}{k}{color}预警{docno}{ended}"
        if t is EventType.ADVISORY_ISSUED:
            return f"不利气象条件提示：{ev.headline or '请做好应对准备'}"
        if t is EventType.ADVISORY_CANCELLED:
            return "不利气象条件应对提示解除"
        if t is EventType.REPORT_REQUESTED:
            return ev.headline or "请于今日14时前报送重污染天气应急措施落实情况"
        return ev.headline or "重污染天气应急通知"

    @staticmethod
    def _validity(ctx: EventContext, *, ear: bool) -> str:
        ev = ctx.event
        if ev.type not in _LEVELLED or ev.type is EventType.WARNING_EXTENDED:
            return ""
        return f"，预计{(spoken if ear else written)(ev.valid_until)}解除" if ev.valid_until else "，解除时间另行通知"

    @staticmethod
    def _instruction(ctx: EventContext, kind: str, action: str, *, whole: bool = True) -> str:
        """What this unit is asked to do, as a sentence ("" for types that ask nothing more)."""
        ev = ctx.event
        if not ev.type.value.startswith("warning."):
            return ""
        if kind == "upward":
            return f"{action}。" if action else ""
        if kind == "duty":
            return f"请{action}。" if action else "请即报县指挥部领导。"
        if ev.type is EventType.WARNING_LIFTED:
            due = ctx.values["summary_due"]
            # the lead says the response ends; spoken and in full, the unit is told so in its own words
            stop = "请终止本单位应急响应措施，" if whole else "请"
            if "总结" in action:  # the unit's own lift line names its summary
                return f"{stop}{due}前{action}。"
            return f"{stop}{action}，{due}前报送总结。" if action else f"{stop}{due}前报送总结。"
        if action:
            return f"请{action}。"
        roman = ctx.values["roman"]
        return f"请落实本单位{roman}级应急响应措施。" if roman else "请落实应急响应措施。"

    @staticmethod
    def _free(ctx: EventContext) -> str:
        ev = ctx.event
        # the lead already says the headline
        own_headline = ev.type in (EventType.ADVISORY_ISSUED, EventType.NOTICE, EventType.REPORT_REQUESTED)
        parts = [p for p in ((None if own_headline else ev.headline), ev.body) if p]
        text = "。".join(p.rstrip("。") for p in parts)
        return text + "。" if text and text[-1] not in "。！？…" else text

    @staticmethod
    def _measures(measures: Sequence[str]) -> str:
        return ("措施：" + "；".join(m.rstrip("。；") for m in measures) + "。") if measures else ""

    # --- per unit and channel

    def fit_sms(self, ctx: EventContext, *, unit_name: str, ack: timedelta | None, ack_url: str = "",
                action: str = "", roles: Sequence[str] = (), measures: Sequence[str] = (),
                report_url: str = "", budget: int | None = None,
                also: Sequence[tuple[str, str]] = ()) -> Fitted:
        """The SMS within `budget` segments (default `max_sms_segments`). Always in: signature, drill
        mark, the decision with its level and time, the unit's instruction, the ack ask and link; then,
        as far as they fit and in this order, 县指挥部, the date of the notice a lift ends, the 文号,
        the measures, the validity and the free text (measures and free text cut at a clause with
        "…"). `cut` names what was shortened or left out ("action" only when the fixed parts alone
        exceed the budget, which `gateway check-config` reports)."""
        room = capacity(budget or self.max_sms_segments)
        v = ctx.values
        unit = kind_of(roles) == "unit"
        head = f"{self.signature}{v['drill']}{'' if unit else '报告：'}"
        if report_url:  # filing the report confirms receipt
            tail = f"填报：{report_url}"
        elif ack and ack_url:
            tail = f"{_span(ack)}内签收：{ack_url}"
        elif ack:
            tail = f"请{_span(ack)}内回复1签收。"
        else:
            tail = ""
        instruction = self._instruction(ctx, kind_of(roles), action, whole=False)
        if also:  # one SMS to a number several units share: each named with its own instruction
            instruction = f"{unit_name}：{instruction}" + "".join(
                f"{n}：{self._instruction(ctx, kind_of(roles), a, whole=False)}" for n, a in also)
        cuts: list[str] = []
        opt: set[str] = set()
        meas = free = ""

        def build() -> str:
            lead = self._lead(ctx, ear=False, opt=frozenset(opt))
            lead += self._validity(ctx, ear=False) if "validity" in opt else ""
            return f"{head}{lead}。{instruction}{meas}{free}{tail}"

        over = utf16_len(build()) - room
        if over > 0:  # the fixed parts alone do not fit: shorten the instruction
            instruction = cut(instruction, max(0, utf16_len(instruction) - over))
            cuts.append("action")
        lift = ctx.event.type is EventType.WARNING_LIFTED
        wanted = {"kind": True, "hq": True, "origin": lift and ctx.chain.origin_at is not None,
                  "doc_no": bool(v["doc_no"] if ctx.event.type is not EventType.WARNING_LIFTED
                                 else ctx.chain.origin_doc_no)}
        for part, want in wanted.items():
            if want:
                opt.add(part)
                if utf16_len(build()) > room:
                    opt.discard(part)
                    cuts.append(part)
        whole_meas = self._measures(measures)
        if whole_meas:
            meas = cut(whole_meas, room - utf16_len(build()))
            cuts += ["measures"] if meas != whole_meas else []
        if self._validity(ctx, ear=False):
            opt.add("validity")
            if utf16_len(build()) > room:
                opt.discard("validity")
                cuts.append("validity")
        whole_free = self._free(ctx)
        if whole_free:
            left = room - utf16_len(build())
            # a stub of a few characters says nothing: then leave it to the notice page
            free = cut(whole_free, left) if left >= MIN_FREE_CHARS or utf16_len(whole_free) <= left else ""
            cuts += ["free"] if free != whole_free else []
        text = build()
        return Fitted(text, sms_segments(text), tuple(cuts))

    def sms(self, ctx: EventContext, *, unit_name: str, ack: timedelta | None, ack_url: str = "",
            action: str = "", roles: Sequence[str] = (), measures: Sequence[str] = (), report_url: str = "") -> str:
        """The SMS text, fitted to the segment budget (see `fit_sms`; `report_url`: a report
        request's form link)."""
        return self.fit_sms(ctx, unit_name=unit_name, ack=ack, ack_url=ack_url, action=action, roles=roles,
                            measures=measures, report_url=report_url).text

    def full_text(self, ctx: EventContext, *, ack: timedelta | None, action: str = "",
                  roles: Sequence[str] = (), measures: Sequence[str] = ()) -> str:
        """The whole message without a length budget (webhook `text`, the notice page)."""
        kind = kind_of(roles)
        lead = self._lead(ctx, ear=False) + self._validity(ctx, ear=False)
        ask = f"请{_span(ack)}内签收。" if ack else ""
        return (f"{self.signature}{ctx.values['drill']}{'报告：' if kind != 'unit' else ''}{lead}。"
                f"{self._instruction(ctx, kind, action)}{self._measures(measures)}{self._free(ctx)}{ask}")

    def voice(self, ctx: EventContext, *, unit_name: str, ack: timedelta | None, action: str = "",
              roles: Sequence[str] = (), measures: Sequence[str] = (),
              also: Sequence[tuple[str, str]] = ()) -> str:
        """The text spoken on the unit's call: levels as 二级, times as people say them, no Roman
        numerals or brackets; the free text bounded to VOICE_FREE_CHARS. `also`: (name, action) of
        units reached on the same number, named and instructed in the same call."""
        kind = kind_of(roles)
        lead = self._lead(ctx, ear=True) + self._validity(ctx, ear=True)
        report = "现报告：" if kind != "unit" else ""
        free = cut(self._free(ctx), VOICE_FREE_CHARS)
        names = "、".join([unit_name, *(n for n, _ in also)])
        instruction = self._instruction(ctx, kind, action)
        if also:
            instruction = f"{unit_name}：{instruction}" + "".join(
                f"{n}：{self._instruction(ctx, kind, a)}" for n, a in also)
        ask = ""
        if ack:
            ask = f"收到请按1签收，一次按键为以上{len(also) + 1}个单位签收。" if also else "收到请按1签收。"
        text = (f"{ctx.values['drill_spoken']}{names}，这里是泽州县重污染天气应急指挥部。{report}{lead}。"
                f"{instruction}{self._measures(measures)}{free}{ask}")
        return for_the_ear(text)

    def webhook(
        self, ctx: EventContext, *, unit_id: str, unit_name: str, text: str, ack_deadline: str | None,
        action: str = "",
    ) -> str:
        """The webhook JSON, assembled around the event JSON serialised once per event."""
        unit = json.dumps({"id": unit_id, "name": unit_name, "action": action or None}, ensure_ascii=False)
        tail = json.dumps(
            {"text": text, "ack": {"required": ack_deadline is not None, "deadline": ack_deadline}},
            ensure_ascii=False,
        )
        return '{"event":' + ctx.event_json + ',"unit":' + unit + "," + tail[1:]
