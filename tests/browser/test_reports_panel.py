"""The console's report panel in a real browser: the selected warning's report requests (who has
reported, who has not) and the office's documents, downloaded with the operator's token."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser

from tests.browser.conftest import ARTIFACTS, Console, expect
from tests.conftest import DaemonFactory
from tests.support.receiver import Receiver
from tests.test_report_documents import ANSWERS
from tests.test_reports import _form, issue_and_request, start


async def test_the_panel_lists_who_reported_and_downloads_the_documents(
        browser: Browser, receiver: Receiver, daemon_factory: DaemonFactory, tmp_path: Path) -> None:
    d, clock = await start(receiver, daemon_factory, tmp_path)
    urls = await issue_and_request(d, receiver, clock, "panel-1")
    assert (await _form(urls["township_xiacun"], ANSWERS))[0] == 200
    ARTIFACTS.mkdir(exist_ok=True)
    console = Console(d, browser)
    page = await console.sign_in("reader")
    await page.click("button.chain[data-event=panel-1]")
    panel = page.locator("#reports-panel")
    await expect(panel).to_contain_text("1 / 3")
    await expect(panel).to_contain_text("大东沟镇人民政府")  # missing
    await page.screenshot(path=ARTIFACTS / "reports-panel.png", full_page=True)
    async with page.expect_download() as dl:
        await panel.locator("#after-action-links button", has_text="PDF").click()
    download = await dl.value
    assert download.suggested_filename == "after-action-panel-1.pdf"
    assert Path(await download.path()).read_bytes().startswith(b"%PDF")
    async with page.expect_download() as dl:
        await panel.locator("tr[data-request] button", has_text="CSV").click()
    csv = Path(await (await dl.value).path()).read_bytes().decode("utf-8-sig")
    assert len(csv.strip().splitlines()) == 4  # a header and the three units
    assert not console.errors, console.errors
