"""The directory kept by the office, through the daemon: the sample sheet imported and exported
unchanged, a bad sheet refused with every problem and nothing changed, the CLI, every change in
the audit trail, and two instances on PostgreSQL seeing the same roster after an import on one."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openpyxl import load_workbook

from tests.conftest import DaemonFactory
from tests.support.daemon import TOKENS, Daemon
from tests.support.pg import throwaway_database
from tests.support.receiver import Receiver
from tests.test_core_api import webhook_config
from tests.test_sheets import SAMPLE, workbook

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


async def put(d: Daemon, data: bytes, content_type: str = XLSX, token: str = "office") -> tuple[int, Any]:
    return await d.call("PUT", "/v1/roster", token=token, data=data, headers={"Content-Type": content_type})


async def export(d: Daemon, fmt: str) -> bytes:
    headers = {"Authorization": f"Bearer {TOKENS['office'][0]}"}
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/roster/export?format={fmt}", headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.read()


def sheets(data: bytes) -> dict[str, list[tuple[object, ...]]]:
    book = load_workbook(io.BytesIO(data), read_only=True)
    return {name: list(book[name].iter_rows(values_only=True)) for name in ("人员", "值班表")}


async def test_the_sample_sheet_is_imported_and_exported_unchanged(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(webhook_config(receiver))
    status, answer = await put(d, SAMPLE.read_bytes())
    assert status == 200 and answer["changed"] and answer["revision"] == 2, answer
    assert len(answer["changes"]["persons_added"]) == 9 and answer["changes"]["duty_entries"] == 5
    exported = await export(d, "xlsx")
    assert sheets(exported) == sheets(SAMPLE.read_bytes())
    # a round trip changes nothing: neither the exported sheet nor the CSV or YAML make a new revision
    for data, kind in ((exported, XLSX), (await export(d, "csv"), "text/csv"),
                       (await export(d, "yaml"), "application/yaml")):
        status, again = await put(d, data, kind)
        assert status == 200 and not again["changed"] and again["revision"] == 2, again
    status, roster = await d.call("GET", "/v1/roster", token="reader")
    unit = next(u for u in roster["units"] if u["id"] == "zezhou_ecology_branch")
    assert [p["id"] for p in unit["persons"]][:2] == ["eco-duty-1", "eco-duty-2"]
    assert unit["persons"][0]["mobile"] == "+86*******0011"  # masked outside the export
    _, audit = await d.call("GET", "/v1/audit", token="admin")
    changed = [r for r in audit["records"] if r["action"] == "roster_changed"]
    assert len(changed) == 1 and changed[0]["principal"] == "office"
    detail = changed[0]["detail"]
    assert detail["revision"] == 2 and "eco-leader" in detail["persons_added"] and detail["format"] == "xlsx"
    # the events it plans record the roster version they were planned with
    s, ev = await d.call("POST", "/v1/events", json_body={"type": "notice", "headline": "测试", "id": "n1"})
    assert s == 202, ev
    _, audit = await d.call("GET", "/v1/audit", token="admin")
    [accepted] = [r for r in audit["records"] if r["action"] == "event_accepted"]
    assert accepted["detail"]["roster_version"] == roster["version"]
    # the writer has no roster:write
    status, err = await put(d, SAMPLE.read_bytes(), token="writer")
    assert status == 403 and err["error"]["code"] == "forbidden"


async def test_a_bad_sheet_is_refused_with_every_problem_and_nothing_changes(
    receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    d = await daemon_factory(webhook_config(receiver))
    assert (await put(d, SAMPLE.read_bytes()))[0] == 200
    before = await export(d, "xlsx")
    bad = workbook(
        [["zezhou_ecology_branch", "p1", "样例甲", "联络员", "1390000004x", None, None],
         ["county_no_such_bureau", "p2", "样例乙", "联络员", "13900000042", None, None],
         ["county_transport_bureau", "p3", "样例丙", "值班人员", "13900000043", None, None]],
        [["county_transport_bureau", "p3", None, "2026-12-05 08:00", "2026-12-05 18:00"],
         ["county_transport_bureau", "p3", None, "2026-12-05 17:00", "2026-12-06 08:00"]])
    status, err = await put(d, bad)
    assert status == 422, err
    assert err["error"]["code"] == "invalid_roster" and "nothing was changed" in err["error"]["message"]
    found = {(p["sheet"], p["row"], p["column"]) for p in err["error"]["problems"]}
    assert found == {("人员", 2, "手机"), ("人员", 3, "单位"), ("值班表", 3, None)}, err
    assert sheets(await export(d, "xlsx")) == sheets(before)
    status, err = await put(d, b"not a workbook")
    assert status == 422 and "not a readable XLSX" in err["error"]["message"]
    status, err = await put(d, b"x", content_type="application/octet-stream")
    assert status == 415, err
    status, err = await put(d, b"roles: {x: y}\nunits: []\n", content_type="application/yaml")
    assert status == 422 and err["error"]["problems"], err


def gateway(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


async def test_the_cli_imports_exports_and_shows_persons(
    receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    d = await daemon_factory(webhook_config(receiver))
    common = ["--config", str(d.root / "config.yaml"), "--url", d.url, "--token", TOKENS["office"][0]]
    done = await asyncio.to_thread(gateway, "roster", "import", str(SAMPLE), *common, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("ok: revision 2"), done.stderr
    out = tmp_path / "out.csv"
    done = await asyncio.to_thread(gateway, "roster", "export", str(out), *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert out.read_text(encoding="utf-8-sig").count("\n") == 1 + 9 + 5
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(workbook([["county_no_such_bureau", "p2", "样例乙", "联络员", "13900000042", None, None]], []))
    done = await asyncio.to_thread(gateway, "roster", "import", str(bad), *common, cwd=tmp_path)
    assert done.returncode == 1 and "sheet 人员, row 2, column 单位: unknown unit" in done.stderr
    done = await asyncio.to_thread(gateway, "roster", "--json", "--config", str(d.root / "config.yaml"),
                                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    units = {u["id"]: u for u in json.loads(done.stdout)}
    assert [p["role"] for p in units["county_transport_bureau"]["persons"]] == ["liaison", "leader"]
    assert units["county_transport_bureau"]["persons"][0]["mobile"].startswith("+86***")


@pytest.fixture
def pg_db() -> Iterator[str]:
    with throwaway_database("gw_roster") as (_, url):
        yield url


async def test_two_instances_on_postgresql_see_the_same_roster_after_an_import_on_one(
    pg_db: str, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    cfg = webhook_config(receiver, store={"url": pg_db})
    a = await daemon_factory(cfg, name="a")
    b = await daemon_factory(cfg, name="b")
    _, before = await b.call("GET", "/v1/roster", token="reader")
    status, answer = await put(a, SAMPLE.read_bytes())
    assert status == 200 and answer["changed"], answer
    seen: dict[str, Any] = before
    for _ in range(50):
        _, seen = await b.call("GET", "/v1/roster", token="reader")
        if seen["version"] != before["version"]:
            break
        await asyncio.sleep(0.1)
    _, on_a = await a.call("GET", "/v1/roster", token="reader")
    assert seen == on_a and seen["version"] != before["version"]
    assert sheets(await export(b, "xlsx")) == sheets(SAMPLE.read_bytes())
    # a restart of b keeps the office's roster: the configured file is only the first seed
    await b.stop()
    await b.start()
    _, after = await b.call("GET", "/v1/roster", token="reader")
    assert after == on_a


async def test_the_file_is_seeded_again_on_sighup_until_the_office_imports(
    receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    import signal

    from contacts.loader import load_roster
    from tests.test_people_flow import roster_file

    path = roster_file(tmp_path / "file")  # the packaged roster with persons on two units
    cfg = webhook_config(receiver)
    cfg["roster"]["path"] = path
    d = await daemon_factory(cfg)

    async def persons(unit: str) -> list[str]:
        _, roster = await d.call("GET", "/v1/roster", token="reader")
        return [p["id"] for p in next(u for u in roster["units"] if u["id"] == unit)["persons"]]

    async def after_reload(n: int) -> None:
        for _ in range(100):
            if d.logs().count('"config_reloaded"') >= n:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(d.tail())

    assert await persons("county_transport_bureau") == ["tr-duty", "tr-liaison", "tr-leader"]
    # the operator edits the file: still a seed, so SIGHUP takes it
    Path(path).write_text(Path(path).read_text(encoding="utf-8").replace("tr-leader", "tr-chief"), encoding="utf-8")
    d.signal(signal.SIGHUP)
    await after_reload(1)
    assert await persons("county_transport_bureau") == ["tr-duty", "tr-liaison", "tr-chief"]
    # the office imports: from now on the store wins and the file is ignored
    assert (await put(d, SAMPLE.read_bytes()))[0] == 200
    Path(path).write_text(Path(path).read_text(encoding="utf-8").replace("tr-chief", "tr-boss"), encoding="utf-8")
    d.signal(signal.SIGHUP)
    await after_reload(2)
    assert await persons("county_transport_bureau") == ["tr-liaison", "tr-leader"]  # the sample's
    assert "roster_file_ignored" in d.logs()
    assert len(load_roster(path).units) == 40
