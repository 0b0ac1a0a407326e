"""Alertmanager webhooks (payload version 4) through the real daemon: label rules, idempotent
resends, level changes and resolution on one chain keyed by fingerprint; and a real
`prometheus-alertmanager` process on loopback delivering a firing alert and its resolution."""

from __future__ import annotations

import asyncio
import base64
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import DaemonFactory
from tests.support.daemon import ALL_ROLES_POLICY, TOKENS, Daemon, all_terminal, free_port, metric_value
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config

FP = "3f2a9c0d1e4b5a67"
STARTS = "2026-11-28T02:00:00.123456789Z"
BASE = f"am-{FP}-20261128T020000Z"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def alert(status: str = "firing", level: str | None = "orange", *, fp: str = FP, starts: str = STARTS,
          ends: str = "0001-01-01T00:00:00Z", alertname: str = "AQIHigh", level_annotation: str | None = None,
          **annotations: str) -> dict[str, Any]:
    """An alert as Alertmanager posts it; the colour in the `level` label or annotation."""
    labels = {"alertname": alertname, "station": "zezhou-1"} | ({"level": level} if level else {})
    if level_annotation:
        annotations["level"] = level_annotation
    return {"status": status, "labels": labels, "annotations": {"summary": "AQI超过200", **annotations},
            "startsAt": starts, "endsAt": ends, "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": fp}


def payload(*alerts: dict[str, Any], version: str = "4") -> dict[str, Any]:
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {"version": version, "groupKey": '{}:{alertname="AQIHigh"}', "truncatedAlerts": 0, "status": status,
            "receiver": "gateway", "groupLabels": {"alertname": "AQIHigh"}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "alerts": list(alerts)}


async def post(d: Daemon, body: dict[str, Any], **kw: Any) -> tuple[int, Any]:
    return await d.call("POST", "/v1/intake/alertmanager", json_body=body, **kw)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_firing_resend_upgrade_and_resolution_form_one_chain(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    status, body = await post(d, payload(alert(level=None, level_annotation="orange")))
    assert status == 202, body
    assert body["results"] == [{"fingerprint": FP, "status": "firing", "outcome": "created", "event_id": BASE,
                                "type": "warning.issued"}]
    first = await d.wait_event(BASE, all_terminal)
    assert (first["level"], first["source"], first["summary"]["by_status"]) == ("orange", "alertmanager",
                                                                                {"delivered": 40})
    assert first["event"]["valid_from"].startswith("2026-11-28T02:00:00")

    resend = alert(level=None, level_annotation="orange", description="AQI 231")  # a new $value
    status, body = await post(d, payload(resend))
    assert (status, body["results"][0]["outcome"], body["results"][0]["event_id"]) == (200, "replayed", BASE)

    # the colour changes in the annotation: the labels, hence the fingerprint, stay (aqi.rules.yml)
    red_alert = alert(level=None, level_annotation="red")
    status, body = await post(d, payload(red_alert))
    assert status == 202 and body["results"][0]["type"] == "warning.upgraded", body
    red = await d.wait_event(f"{BASE}-2", all_terminal)
    assert (red["supersedes"], red["level"]) == (BASE, "red")
    assert (await post(d, payload(red_alert)))[0] == 200

    resolved = {**red_alert, "status": "resolved", "endsAt": "2026-11-29T06:00:00Z"}
    status, body = await post(d, payload(resolved))
    assert status == 202 and body["results"][0]["type"] == "warning.lifted", body
    lifted = await d.wait_event(f"{BASE}-resolved", all_terminal)
    assert (lifted["supersedes"], lifted["state"]) == (f"{BASE}-2", "ended")
    status, body = await post(d, payload(resolved))
    assert (status, body["results"][0]["outcome"]) == (200, "replayed")
    status, body = await post(d, payload(red_alert))  # a late firing resend of the same episode
    assert (status, body["results"][0]["outcome"]) == (200, "ignored")
    assert len(receiver.delivered_ids()) == 120  # three events, nothing sent twice

    m = await d.metrics()
    assert metric_value(m, "gateway_events_total", type="warning.lifted", source="alertmanager") == 1


async def test_a_new_episode_continues_an_active_chain(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    assert (await post(d, payload(alert(level="yellow"))))[0] == 202
    later = "2026-11-28T09:30:00Z"  # resolution was never seen; Alertmanager restarted the episode
    status, body = await post(d, payload(alert(level="yellow", starts=later)))
    assert (status, body["results"][0]["outcome"], body["results"][0]["event_id"]) == (200, "replayed", BASE)
    status, body = await post(d, payload(alert(level="orange", starts=later)))
    new_base = f"am-{FP}-20261128T093000Z"
    assert status == 202 and body["results"][0]["event_id"] == new_base, body
    ev = await d.wait_event(new_base, all_terminal)
    assert (ev["type"], ev["supersedes"], ev["chain_id"]) == ("warning.upgraded", BASE, BASE)
    status, body = await post(d, payload(alert("resolved", level="orange", starts=later, ends=later)))
    assert status == 202 and body["results"][0]["event_id"] == f"{new_base}-resolved"


async def test_rules_auth_and_refusals(receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    rules = [{"alertnames": ["AQIHigh"], "default_level": None},
             {"alertnames": ["PM25Rising"], "kind": "advisory", "status": "exercise"}]
    d = await daemon_factory(webhook_config(receiver, alertmanager={"rules": rules}), ALL_ROLES_POLICY)
    writer = TOKENS["writer"][0]
    mixed = payload(alert(alertname="DiskFull", fp="aa01"), alert(alertname="PM25Rising", fp="aa02", level=None),
                    alert(fp="aa03", level=None))
    status, body = await post(d, mixed, token=None, headers=basic("alertmanager", writer))
    assert status == 202, body
    outcomes = [(r["outcome"], r.get("type"), (r.get("error") or {}).get("code")) for r in body["results"]]
    assert outcomes == [("ignored", None, None), ("created", "advisory.issued", None), ("rejected", None, "no_level")]
    status, body = await post(d, payload(alert("resolved", alertname="PM25Rising", fp="aa02", level=None)))
    assert status == 202 and body["results"][0]["type"] == "advisory.cancelled", body

    cases: list[tuple[dict[str, Any], dict[str, Any], int, str, str | None]] = [
        (payload(alert(fp="bb01"), version="3"), {}, 422, "unsupported_version", "$.version"),
        ({"version": "4", "status": "firing", "alerts": [{"status": "firing"}]}, {}, 422, "invalid_field",
         "$.alerts[0].labels"),
        (payload(alert(fp="not-hex!")), {}, 422, "invalid_field", "$.alerts[0].fingerprint"),
        (payload(alert(fp="bb02", level="purple")), {}, 422, "alerts_rejected", "$.alerts[0].labels.level"),
        (payload(alert(fp="bb03")), {"token": None, "headers": basic("am", "wrong")}, 401, "unauthorized", None),
        (payload(alert(fp="bb04")), {"token": None, "headers": {"Authorization": "Basic %%%"}}, 401, "unauthorized",
         None),
        (payload(alert(fp="bb05")), {"token": None, "headers": basic("am", TOKENS["reader"][0])}, 403, "forbidden",
         None),
        (payload(alert(fp="bb06")), {"token": None}, 401, "unauthorized", None),
    ]
    for body_in, kw, want, code, where in cases:
        status, body = await post(d, body_in, **kw)
        assert (status, body["error"]["code"], body["error"].get("field")) == (want, code, where), body
    assert "request_crashed" not in d.logs()


# ---- a real Alertmanager


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[Any]:
    if ALERTMANAGER is None:
        pytest.skip("prometheus-alertmanager is not installed (Debian package: prometheus-alertmanager)")
    procs: list[asyncio.subprocess.Process] = []

    async def start(gateway: Daemon) -> str:
        port = free_port()
        cfg = {
            "route": {"receiver": "gateway", "group_by": ["alertname"], "group_wait": "100ms",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "gateway", "webhook_configs": [{
                "url": f"{gateway.url}/v1/intake/alertmanager", "send_resolved": True,
                "http_config": {"basic_auth": {"username": "alertmanager", "password": TOKENS["writer"][0]}}}]}],
        }
        (tmp_path / "am.yml").write_text(yaml.safe_dump(cfg))
        log = (tmp_path / "alertmanager.log").open("wb")
        # loopback only; an empty cluster address turns the gossip listener (default :9094) off
        procs.append(await asyncio.create_subprocess_exec(
            str(ALERTMANAGER), f"--config.file={tmp_path / 'am.yml'}", f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=debug",
            stdout=log, stderr=asyncio.subprocess.STDOUT))
        log.close()
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s:
            for _ in range(200):
                try:
                    async with s.get(url + "/-/ready") as r:
                        if r.status == 200:
                            return url
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise TimeoutError((tmp_path / "alertmanager.log").read_text()[-3000:])

    try:
        yield start
    finally:
        for p in procs:
            p.terminate()
            try:
                await asyncio.wait_for(p.wait(), 10)
            except TimeoutError:
                p.kill()
                await p.wait()


async def _wait_events(d: Daemon, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
    for _ in range(int(timeout / 0.1)):
        _, body = await d.call("GET", "/v1/events", token="reader")
        found = [e for e in body["events"] if predicate(e)]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise TimeoutError(f"no matching event; events: {body}\n{d.tail()}")


async def test_real_alertmanager_fires_and_resolves(
    receiver: Receiver, daemon_factory: DaemonFactory, alertmanager: Any, tmp_path: Path
) -> None:
    d = await daemon_factory(webhook_config(receiver), ALL_ROLES_POLICY)
    am_url = await alertmanager(d)
    starts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    labels = {"alertname": "AQIHigh", "level": "orange", "station": "zezhou-1"}
    firing = [{"labels": labels, "annotations": {"summary": "AQI超过200"}, "startsAt": starts.isoformat(),
               "endsAt": (starts + timedelta(hours=1)).isoformat()}]
    async with aiohttp.ClientSession() as s, s.post(am_url + "/api/v2/alerts", json=firing) as r:
        assert r.status == 200, await r.text()

    issued = await _wait_events(d, lambda e: e["source"] == "alertmanager" and e["type"] == "warning.issued")
    event_id = issued[0]["id"]
    assert event_id.endswith(f"-{starts:%Y%m%dT%H%M%S}Z") and issued[0]["level"] == "orange"
    body = await d.wait_event(event_id, all_terminal)
    assert body["summary"]["by_status"] == {"delivered": 40}
    assert body["submitted_by"] == "writer"  # basic auth, the password being the writer's token

    resolved = [{**firing[0], "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}]
    async with aiohttp.ClientSession() as s, s.post(am_url + "/api/v2/alerts", json=resolved) as r:
        assert r.status == 200, await r.text()
    lifted = await d.wait_event(f"{event_id}-resolved", all_terminal)
    assert (lifted["type"], lifted["supersedes"]) == ("warning.lifted", event_id)
    assert (await d.wait_event(event_id, lambda b: b["state"] == "superseded"))["state"] == "superseded"
    assert "request_crashed" not in d.logs()
