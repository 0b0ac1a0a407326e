"""The console in a real browser (Debian's chromium, headless) against the daemon on the sandbox:
issue a warning and watch the board fill live; the two-person rule across two browser
contexts; a read-only token; the admin's views. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Browser

from gateway.sandbox import Sandbox
from tests.browser.conftest import ARTIFACTS, DESKTOP, PHONE, Console, expect
from tests.conftest import DaemonFactory
from tests.support.daemon import TOKENS, Daemon, all_terminal
from tests.support.receiver import Receiver
from tests.test_escalation import CONFIRMING, SILENT, red_policy
from tests.test_twilio_flow import ENV, MOBILE_TELECOM, twilio_config

ORANGE = {"type": "warning.issued", "level": "orange", "valid_from": "2026-11-28T12:00:00+08:00",
          "headline": "泽州县重污染天气橙色预警"}

# every distinct "N / M 已签收" the board showed, recorded in the page as it happens
WATCH_ACKS = """() => {
  window.__ackSeen = [];
  window.__loaded = performance.timeOrigin;
  new MutationObserver(() => {
    const el = document.getElementById('ack-count');
    const t = el && el.textContent;
    if (t && window.__ackSeen[window.__ackSeen.length - 1] !== t) window.__ackSeen.push(t);
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""
ALL_DELIVERED = """() => {
  const cells = [...document.querySelectorAll('#matrix [data-status]')];
  return cells.length > 0 && cells.every((c) => c.dataset.status === 'delivered');
}"""


def acked(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+) / (\d+) 已签收", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


async def test_issue_orange_and_watch_the_board_fill_live(console: Console) -> None:
    page = await console.sign_in("writer")
    await page.evaluate(WATCH_ACKS)
    await page.click(".tab[data-view=issue]")
    await page.select_option("#f-type", "warning.issued")
    await page.check("input[name=level][value=orange]")
    await page.fill("#f-headline", "泽州县重污染天气橙色预警")
    await expect(page.locator("#preview-sms")).to_contain_text("橙色预警，启动Ⅱ级应急响应")
    await expect(page.locator("#preview-segments")).to_contain_text(re.compile(r"\d 条短信"))
    # every unit's own message, grouped by role (issue 14)
    await page.click("#preview-messages summary")
    await expect(page.locator("#preview-messages li[data-unit=county_education_bureau]")).to_contain_text(
        "停止户外活动")
    await expect(page.locator("#preview-messages h4").first).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "issue-desktop.png", full_page=True)

    await page.click("#issue-submit")
    await page.click("dialog button[value=issue]")
    matrix = page.locator("#matrix")
    await expect(matrix).to_be_visible()
    await expect(page.locator("#event-state")).to_have_text("生效中")
    # every unit x channel cell reaches delivered, pushed by the stream: no reload happened
    await page.wait_for_function(ALL_DELIVERED, timeout=60_000)
    units = await matrix.locator("tr[data-unit]").count()
    assert units >= 30
    # the sandbox presses 1 on every call: the voice units confirm one after another
    await page.wait_for_function("() => window.__ackSeen.length >= 2", timeout=30_000)
    await page.wait_for_timeout(1500)
    seen = await page.evaluate("window.__ackSeen")
    counts = [acked(t) for t in seen]
    assert counts[0][0] < counts[-1][0] and counts[-1][0] > 0, seen
    assert [c for c, _ in counts] == sorted(c for c, _ in counts), seen
    assert await page.evaluate("window.__loaded") == await page.evaluate("performance.timeOrigin")
    voice_units = await matrix.locator("tr[data-unit]:has([data-status]) >> text=已签收").count()
    assert voice_units > 0

    # the units still unconfirmed (SMS only, no reply yet) are listed first, and one phones in
    first_group = matrix.locator("tbody").first
    assert await first_group.get_attribute("data-group") == "unacked"
    open_row = first_group.locator("tr[data-unit]").first
    unit_id = await open_row.get_attribute("data-unit")
    # the chain list agrees with the board on who confirmed
    await expect(page.locator("#active-chains")).to_contain_text(await page.locator("#ack-count").inner_text())
    await expect(page.locator("#toasts .toast")).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "board-desktop.png", full_page=False)
    await page.screenshot(path=ARTIFACTS / "board-desktop-full.png", full_page=True)
    await open_row.locator("[data-ack-unit]").click()
    await page.fill("#ack-note", "值班员王某来电确认收到")
    await page.click("dialog button[value=ack]")
    row = matrix.locator(f"tr[data-unit={unit_id}]")
    await expect(row).to_have_attribute("data-acked", "1")
    await expect(row).to_contain_text("电话代签（writer）")
    total_after = acked(await page.locator("#ack-count").inner_text())
    assert total_after[0] == counts[-1][0] + 1

    await expect(page.locator("#active-chains")).to_contain_text(f"{total_after[0]} / {total_after[1]} 已签收")

    await page.set_viewport_size(PHONE)
    await expect(page.locator("#toasts .toast")).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "board-phone.png", full_page=False)
    await page.screenshot(path=ARTIFACTS / "board-phone-full.png", full_page=True)
    await page.locator("#matrix").scroll_into_view_if_needed()
    await page.evaluate("document.getElementById('matrix').scrollIntoView()")
    await page.screenshot(path=ARTIFACTS / "board-phone-matrix.png", full_page=False)
    assert not console.errors


async def _orange(d: Daemon) -> dict[str, Any]:
    status, answer = await d.call("POST", "/v1/events", json_body={**ORANGE, "id": "orange-pm"})
    assert status == 202, answer
    return await d.wait_event("orange-pm", all_terminal, timeout=60)


async def test_two_person_rule_across_two_browser_contexts(console: Console) -> None:
    await _orange(console.daemon)
    # the requester: drafts, then tries to approve the draft itself
    requester = await console.sign_in("leader")
    await requester.click(".tab[data-view=public]")
    await expect(requester.locator("#two-person-rule")).to_contain_text("另一位")
    await requester.select_option("#pm-event", "orange-pm")
    await requester.fill("#pm-text", "泽州县已启动重污染天气橙色预警，请减少户外活动。")
    await requester.click("#pm-request button[type=submit]")
    card = requester.locator("#pm-card")
    await expect(card.locator("#pm-state")).to_have_text("待审批")
    pm_id = await card.get_attribute("data-pm") or ""
    assert pm_id.startswith("pm_")
    await expect(requester.locator("#self-approval-note")).to_be_visible()
    await requester.click("#pm-approve")
    refusal = card.get_by_role("alert")
    await expect(refusal).to_contain_text("双人规则")
    await expect(refusal).to_contain_text("403")
    await expect(refusal).to_contain_text("the requester cannot approve its own public message")
    await expect(card.locator("#pm-state")).to_have_text("待审批")
    await requester.screenshot(path=ARTIFACTS / "public-self-approval-refused.png", full_page=True)

    # the second principal opens the shared link in another browser context and approves
    approver = await console.sign_in("leader2", await console.context(), path=f"/#public/{pm_id}")
    acard = approver.locator("#pm-card")
    await expect(acard).to_contain_text("leader")
    await approver.click("#pm-approve")
    await expect(acard.locator("#pm-state")).to_have_text("已批准并发布")
    await expect(acard.locator("dd").nth(2)).to_have_text("leader2")
    await expect(approver.locator("#pm-deliveries li[data-status=delivered]").first).to_be_visible()

    # the board shows the public message going out
    await approver.click(".tab[data-view=board]")
    await approver.click("[data-event=orange-pm]")
    await expect(approver.locator("#public-summary")).to_contain_text(pm_id)
    public = approver.locator("#matrix .ds-public")
    await expect(public.first).to_be_visible()
    await approver.wait_for_function(
        "() => [...document.querySelectorAll('#matrix .ds-public')].every((c) => c.dataset.status === 'delivered')")
    assert await public.count() >= 4  # the three carriers and the media centre
    await approver.screenshot(path=ARTIFACTS / "board-public-desktop.png", full_page=True)
    assert not console.errors


REFUSED = """async ([eventId, deliveryId]) => {
  const token = sessionStorage.getItem('gw.token');
  const call = async (method, path, body) => {
    const headers = {Authorization: `Bearer ${token}`, 'Content-Type': 'application/json'};
    const r = await fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
    return [path, r.status, (await r.json()).error?.code];
  };
  return Promise.all([
    call('POST', '/v1/events', {type: 'warning.issued', level: 'red'}),
    call('POST', '/v1/preview', {type: 'warning.issued', level: 'red'}),
    call('POST', `/v1/events/${eventId}/cancel`),
    call('POST', `/v1/deliveries/${deliveryId}/ack`, {via: 'phone', note: 'x'}),
    call('POST', '/v1/public-messages', {event_id: eventId, text: 'x'}),
    call('GET', '/v1/audit'),
  ]);
}"""


async def test_read_only_token_sees_no_actions_and_is_refused_anyway(console: Console) -> None:
    body = await _orange(console.daemon)
    page = await console.sign_in("reader")
    await page.click("[data-event=orange-pm]")
    await expect(page.locator("#matrix tr[data-unit]").first).to_be_visible()
    await expect(page.locator("#ack-count")).to_be_visible()
    for hidden in (".tab[data-view=issue]", ".tab[data-view=audit]"):
        await expect(page.locator(hidden)).to_be_hidden()
    for absent in ("#cancel-event", "#request-public", "[data-ack-unit]", "#issue-form"):
        assert await page.locator(absent).count() == 0, absent
    await page.click(".tab[data-view=public]")
    await expect(page.locator("#two-person-rule")).to_be_visible()
    assert await page.locator("#pm-request").count() == 0
    await page.set_viewport_size(PHONE)
    await page.click(".tab[data-view=board]")
    await page.screenshot(path=ARTIFACTS / "board-readonly-phone.png", full_page=False)

    answers = await page.evaluate(REFUSED, ["orange-pm", body["deliveries"][0]["id"]])
    assert [(status, code) for _, status, code in answers] == [(403, "forbidden")] * len(answers), answers
    _, after = await console.daemon.call("GET", "/v1/events/orange-pm", token="reader")
    assert after["state"] == "active" and after["summary"] == body["summary"]
    assert not console.errors


async def test_admin_sees_failures_fallbacks_roster_warnings_and_the_audit_trail(
    console: Console, sandbox: Sandbox
) -> None:
    sandbox.update_config({"fail_numbers": {MOBILE_TELECOM: "undelivered:30003"}})
    await _orange(console.daemon)
    page = await console.sign_in("admin")
    await page.click("[data-event=orange-pm]")
    # the SMS that failed and the voice call that replaced it, side by side on the unit's row
    telecom = page.locator("#matrix tr[data-unit=china_telecom_zezhou]")
    await expect(telecom.locator(".ds-failed")).to_contain_text("失败")
    await expect(telecom.locator(".ds-fallback")).to_contain_text("补发")
    await expect(page.locator("#delivery-counts")).to_contain_text("补发 1")
    await page.click(".tab[data-view=ops]")
    channels = page.locator("#channels")
    for name in ("sms", "voice", "webhook"):
        await expect(channels.locator(f"[data-channel={name}]")).to_contain_text("正常")
    await expect(page.locator("#recent-failures")).to_contain_text("中国电信")
    await expect(page.locator("#recent-failures")).to_contain_text("30003")
    await expect(page.locator("#metrics-link")).to_have_attribute("href", "/metrics")
    await page.screenshot(path=ARTIFACTS / "ops-desktop.png", full_page=True)
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=ARTIFACTS / "ops-phone.png", full_page=True)
    await page.set_viewport_size(DESKTOP)
    await page.click(".tab[data-view=roster]")
    await expect(page.locator("#roster-warnings")).to_contain_text("2028156")
    await expect(page.locator("#roster-table tr[data-unit]")).to_have_count(40)
    await page.click(".tab[data-view=audit]")
    audit = page.locator("#audit-table")
    await expect(audit.locator("tr[data-action=event_accepted]")).to_contain_text("orange-pm")
    await expect(audit.locator("tr[data-action=event_accepted]")).to_contain_text("writer")
    # the token stays in this tab's sessionStorage and nowhere else
    assert await page.evaluate("localStorage.length") == 0
    assert await page.evaluate("sessionStorage.getItem('gw.token')") == TOKENS["admin"][0]
    assert not console.errors


async def test_escalation_steps_show_on_the_board(
    browser: Browser, sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory
) -> None:
    # two of four units confirm by keypress; the other two are called again, then reported
    sandbox.update_config({"auto_press": False, "auto_press_numbers": sorted(CONFIRMING.values())})
    d = await daemon_factory(twilio_config(sandbox, receiver), red_policy(), env=ENV, name="esc")
    console = Console(d, browser)
    page = await console.sign_in("writer")
    status, answer = await d.call("POST", "/v1/events", json_body={"type": "warning.issued", "level": "red",
                                                                   "id": "red-esc"})
    assert status == 202, answer
    await expect(page.locator("[data-event=red-esc]")).to_be_visible()
    await page.click("[data-event=red-esc]")
    unacked = page.locator("#matrix tbody[data-group=unacked]")
    for unit in SILENT:
        row = unacked.locator(f"tr[data-unit={unit}]")
        await expect(row.locator(".esc")).to_contain_text("已催办 2 步：重拨语音电话、通报县指挥部办公室")
        await expect(row.locator(".ds-escalation").first).to_be_visible()
    for unit in CONFIRMING:
        await expect(page.locator(f"#matrix tr[data-unit={unit}]")).to_have_attribute("data-acked", "1")
    await expect(page.locator("#ack-count")).to_have_text("2 / 4 已签收")
    await expect(page.locator("#delivery-counts")).to_contain_text("已催办 2 个单位")
    await expect(page.locator("#toasts .toast")).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "board-escalation-desktop.png", full_page=True)
    assert not console.errors
