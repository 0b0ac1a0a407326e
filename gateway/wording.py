"""The words of the messages: levels, times and dates, written and spoken, and how a text is cut.

Written text uses the official register (重污染天气橙色预警，Ⅱ级应急响应, full-width brackets);
spoken text says levels as 二级, times as 中午12点, and has no Roman numerals or brackets, which
text-to-speech engines read out badly.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar

BEIJING = ZoneInfo("Asia/Shanghai")
# colour, Roman numeral of the response level, spoken numeral
LEVELS = {"yellow": ("黄色", "Ⅲ", "三"), "orange": ("橙色", "Ⅱ", "二"), "red": ("红色", "Ⅰ", "一"),
          "blue": ("蓝色", "Ⅳ", "四")}
_CLAUSE_ENDS = "。；！？，、;,!?"
_ROMAN = {"Ⅰ": "一", "Ⅱ": "二", "Ⅲ": "三", "Ⅳ": "四"}
_ASCII_ROMAN = re.compile(r"(?<![A-Za-z])(IV|III|II|I)(?=级)")
_BRACKETS = re.compile(r"[()（）\[\]【】〔〕<>《》{}]")


def utf16_len(text: str) -> int:
    """Characters as an SMS counts them in UCS-2 (an astral character is two)."""
    return len(text.encode("utf-16-le")) // 2


def written(dt: datetime) -> str:
    """12月10日12时, 12月10日12时30分 (Beijing time)."""
    t = dt.astimezone(BEIJING)
    return f"{t.month}月{t.day}日{t.hour}时" + (f"{t.minute}分" if t.minute else "")


def spoken(dt: datetime) -> str:
    """12月10日中午12点, 12月10日晚上8点30分: the clock as people say it (Beijing time)."""
    t = dt.astimezone(BEIJING)
    h = t.hour
    part = ("凌晨" if h < 6 else "早上" if h < 9 else "上午" if h < 12 else "中午" if h < 14 else
            "下午" if h < 18 else "晚上")
    hour = h if h <= 12 else h - 12
    return f"{t.month}月{t.day}日{part}{hour}点" + (f"{t.minute}分" if t.minute else "")


def day(d: date) -> str:
    return f"{d.month}月{d.day}日"


def working_days_after(start: datetime, n: int) -> date:
    """The n-th working day after `start`'s date in Beijing, by the Chinese holiday calendar
    (`chinese-calendar`: public holidays and the weekend days made working days). For a year the
    package has no data for yet, Monday to Friday count."""
    d = start.astimezone(BEIJING).date()
    try:
        found_day: date = chinese_calendar.find_workday(n, d)
        return found_day
    except NotImplementedError:
        found = 0
        while found < n:
            d += timedelta(days=1)
            found += d.weekday() < 5
        return d


def for_the_ear(text: str) -> str:
    """Text fit for text-to-speech: Roman numerals as Chinese numerals, no brackets."""
    text = "".join(_ROMAN.get(ch, ch) for ch in text)
    text = _ASCII_ROMAN.sub(lambda m: {"I": "一", "II": "二", "III": "三", "IV": "四"}[m.group(1)], text)
    return _BRACKETS.sub("", text)


def cut(text: str, room: int) -> str:
    """`text` within `room` characters (UTF-16): whole when it fits, else up to the last clause
    boundary in the first half or more of the room, then "…"; "" when not even that fits."""
    if utf16_len(text) <= room:
        return text
    if room < 2:
        return ""
    head = text[: room - 1]
    while utf16_len(head) > room - 1:
        head = head[:-1]
    at = max(head.rfind(p) for p in _CLAUSE_ENDS)
    if at >= len(head) // 2:
        head = head[:at]
    return head.rstrip(_CLAUSE_ENDS + " ") + "…"
