"""Shared set-up of the report tests: a policy with the daily report round and the shipped
report forms, the test clock, and the report links the units received."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from gateway.render import BEIJING
from tests.support.receiver import Receiver

DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "gateway" / "defaults" / "policy.yaml"
REPORTERS = ["township_xiacun", "township_dadonggou", "county_housing_construction_bureau"]
LINK = re.compile(r"(https?://[^\s，。]+/r/[A-Za-z0-9_-]+)")


def report_policy(**reports: Any) -> dict[str, Any]:
    """Warnings to the townships; the daily report round at 12:00 asks three units."""
    shipped = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))["reports"]
    return {
        "drill_audience": {"units": ["zezhou_ecology_branch", *REPORTERS]},
        "max_attempts": {"webhook": 8, "sms": 5, "voice": 3},
        "rules": [
            {"name": "warnings", "when": {"types": ["warning.issued", "warning.upgraded", "warning.lifted"]},
             "audience": {"units": ["zezhou_ecology_branch", *REPORTERS]}, "channels": ["webhook"], "ack": "1h"},
            {"name": "daily-report", "when": {"types": ["report.requested"]}, "audience": {"units": REPORTERS},
             "channels": ["webhook"], "ack": "2h"},
        ],
        "reminders": [{"name": "daily-report", "when": {"types": ["warning.issued", "warning.upgraded"]},
                       "daily_at": "12:00"}],
        "reports": {**shipped, **reports},
    }


def tomorrow_at(hhmm: str, days: int = 1) -> datetime:
    hh, mm = (int(x) for x in hhmm.split(":"))
    return (datetime.now(BEIJING) + timedelta(days=days)).replace(hour=hh, minute=mm, second=0, microsecond=0)


def set_clock(path: Path, at: datetime) -> None:
    """Jump the daemon's report clock (GATEWAY_TEST_CLOCK) to `at`."""
    path.write_text(at.isoformat())


def links(receiver: Receiver) -> dict[str, str]:
    """The latest report link each unit received by webhook, by unit id."""
    out: dict[str, str] = {}
    for x in receiver.received:
        text = (x.json or {}).get("text", "") if isinstance(x.json, dict) else ""
        m = LINK.search(text)
        if m:
            out[x.path.rsplit("/", 1)[-1]] = m.group(1)
    return out
