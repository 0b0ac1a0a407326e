"""Strict types in JSON intake, through the real daemon: a timestamp is an RFC 3339 string with an
offset, and nothing else is read as one (pydantic's lax mode took `12` for 1970-01-01T00:00:12Z)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config

BASE = {"type": "warning.issued", "level": "yellow", "headline": "黄色预警"}
REFUSED: list[tuple[str, Any, str]] = [
    ("valid_from", 12, "$.valid_from"),
    ("valid_from", 1764302400.5, "$.valid_from"),
    ("valid_from", "1764302400", "$.valid_from"),  # digits in a string: lax mode's epoch seconds
    ("valid_from", True, "$.valid_from"),
    ("valid_from", "2026-11-28", "$.valid_from"),  # a date is not a point in time
    ("valid_from", "2026-11-28T12:00:00", "$.valid_from"),  # no offset
    ("valid_from", "2026-11-28 12:00:00+08:00", "$.valid_from"),
    ("valid_until", 0, "$.valid_until"),
    ("headline", 12, "$.headline"),  # numbers are not coerced into strings either
    ("area", 140525, "$.area"),
    ("id", 7, "$.id"),
    ("surprise", "x", "$.surprise"),  # unknown fields stay refused
]


async def test_timestamps_and_strings_are_not_coerced(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    for name, value, where in REFUSED:
        status, body = await d.call("POST", "/v1/events", json_body={**BASE, name: value})
        assert status == 422, (name, value, body)
        assert body["error"]["field"] == where and body["error"]["code"] == "invalid_field", (name, value, body)
    status, body = await d.call("POST", "/v1/events", json_body={**BASE, "valid_from": 12})
    assert "RFC 3339" in body["error"]["message"]
    _, listing = await d.call("GET", "/v1/events", token="reader")
    assert listing["events"] == []  # nothing of the above was taken in

    for value in ("2026-11-28T12:00:00+08:00", "2026-11-28T04:00:00Z", "2026-11-28T04:00:00.250z"):
        status, answer = await d.call("POST", "/v1/events", json_body={**BASE, "valid_from": value})
        assert status == 202, (value, answer)


@pytest.mark.parametrize("value", ["2026-11-28T12:00:00+08:00", "2026-11-28T12:00:00.123456789-05:30"])
def test_rfc3339_shapes_parse(value: str) -> None:
    from gateway.events import Event

    assert Event.model_validate({**BASE, "valid_from": value}).valid_from is not None
