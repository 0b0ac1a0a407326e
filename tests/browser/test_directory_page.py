"""The console's 通讯录 page in a real browser: persons and today's duty per unit, and the office
uploading and downloading its sheet (a bad sheet shows every problem and changes nothing)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from gateway.sandbox import Sandbox
from tests.browser.conftest import ARTIFACTS, Console, expect
from tests.conftest import DaemonFactory
from tests.support.receiver import Receiver
from tests.test_people_flow import roster_file
from tests.test_sheets import SAMPLE, workbook
from tests.test_twilio_flow import ENV, twilio_config


async def test_the_office_sees_persons_and_todays_duty_and_uploads_its_sheet(
    browser: Browser, sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path
) -> None:
    cfg = twilio_config(sandbox, receiver)
    cfg["roster"]["path"] = roster_file(tmp_path / "file")
    d = await daemon_factory(cfg, env=ENV)
    ARTIFACTS.mkdir(exist_ok=True)
    console = Console(d, browser)
    page = await console.sign_in("office")
    await page.click(".tab[data-view=roster]")
    row = page.locator("#roster-table tr[data-unit=county_transport_bureau]")
    await expect(row.locator("[data-person]")).to_have_count(3)
    await expect(row.locator(".on-duty")).to_contain_text("样例值班员")
    await expect(row).not_to_contain_text("13900000051")  # masked on the page
    await page.screenshot(path=ARTIFACTS / "roster-persons.png", full_page=False)

    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(workbook([["county_no_such_bureau", "p2", "样例乙", "联络员", "13900000042", None, None]], []))
    await page.set_input_files("#roster-upload", str(bad))
    await expect(page.locator("#roster-problems li")).to_contain_text("人员 第2行 单位列：unknown unit")
    await page.keyboard.press("Escape")
    await expect(row.locator("[data-person]")).to_have_count(3)  # nothing changed

    await page.set_input_files("#roster-upload", str(SAMPLE))
    eco = page.locator("#roster-table tr[data-unit=zezhou_ecology_branch]")
    await expect(eco.locator("[data-person]")).to_have_count(4)
    await expect(row.locator("[data-person]")).to_have_count(2)  # the sample's persons replaced the file's
    async with page.expect_download() as info:
        await page.click("#roster-download")
    download = await info.value
    saved = tmp_path / "downloaded.xlsx"
    await download.save_as(saved)
    assert saved.read_bytes()[:2] == b"PK"
    assert not console.errors, console.errors


async def test_a_reader_sees_no_upload(console: Console) -> None:
    page = await console.sign_in("reader")
    await page.click(".tab[data-view=roster]")
    await expect(page.locator("#roster-table tr[data-unit]")).to_have_count(40)
    await expect(page.locator("#roster-office")).to_have_count(0)
    assert not console.errors


