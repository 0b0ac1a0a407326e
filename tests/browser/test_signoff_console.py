"""The sign-off (签发) console in a real browser against the daemon on the sandbox with the
packaged policy: the board shows the draft first; the submitter sees who has been asked and
cannot sign; the commander sees what every unit will receive, signs, and the board fills."""

from __future__ import annotations

from playwright.async_api import Browser

from gateway.sandbox import Sandbox
from tests.browser.conftest import ARTIFACTS, Console, expect
from tests.conftest import DaemonFactory
from tests.support.receiver import Receiver
from tests.test_twilio_flow import ENV, twilio_config

ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00",
          "headline": "泽州县重污染天气橙色预警", "id": "console-draft"}


async def test_drafts_come_first_and_a_signer_signs_them_in_the_console(
        browser: Browser, sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    d = await daemon_factory(twilio_config(sandbox, receiver), env=ENV, signoff=True)
    console = Console(d, browser)
    status, answer = await d.call("POST", "/v1/events", json_body=ORANGE)
    assert status == 202 and answer["state"] == "pending_signoff"

    writer = await console.sign_in("writer")
    banner = writer.locator("#signoff-banner a[data-event=console-draft]")
    await expect(banner).to_be_visible()
    await banner.click()
    draft = writer.locator("#signoff-console-draft")
    await expect(draft.locator("[data-role=state]")).to_have_text("待签发")
    await expect(draft.locator("[data-role=asked]")).to_contain_text("deputy_commander")  # who has been asked
    await expect(draft.locator("[data-role=sign]")).to_have_count(0)  # no events:sign scope

    commander = await console.sign_in("commander", path="/#signoff/console-draft")
    draft = commander.locator("#signoff-console-draft")
    await expect(draft).to_be_visible()
    await expect(draft.locator(".previews")).to_contain_text("经县指挥部批准")
    await expect(draft.locator(".previews")).to_contain_text("下村镇人民政府")
    await commander.screenshot(path=ARTIFACTS / "signoff-desktop.png", full_page=True)
    await draft.locator("input[id^=ref-]").fill("泽污应指〔2026〕3号")
    await draft.locator("[data-role=sign]").click()
    await expect(commander.locator("#event-state")).to_have_text("生效中")
    ev = await d.wait_event("console-draft", lambda b: b["state"] == "active")
    assert ev["signoff"]["decided_by"] == "commander" and ev["signoff"]["ref"] == "泽污应指〔2026〕3号"
    assert not console.errors, console.errors
