"""Browser fixtures: Debian's chromium driven headless by Playwright (never a downloaded
browser build), against the real daemon on the Twilio sandbox running in the test process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, ViewportSize, async_playwright, expect

from gateway.sandbox import Sandbox, SandboxConfig
from tests.conftest import DaemonFactory
from tests.support.daemon import TOKENS, Daemon
from tests.support.receiver import Receiver
from tests.test_twilio_flow import ENV, SID, TOKEN, twilio_config

CHROMIUM = "/usr/bin/chromium"  # Debian package `chromium`
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
__all__ = ["ARTIFACTS", "DESKTOP", "PHONE", "Console", "expect"]

ARTIFACTS = Path(__file__).parents[1] / "artifacts"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

expect.set_options(timeout=30_000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Skips the test (before any daemon starts) when Debian's chromium is not installed."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"browser tests need Debian's chromium at {CHROMIUM}: apt-get install chromium")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """Presses 1 on every call it places, as a duty officer confirming receipt would; the
    callbacks are spread out a little so the board can be seen filling."""
    sb = Sandbox(SandboxConfig(account_sid=SID, auth_token=TOKEN, callback_delay=0.15, auto_press=True))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


@pytest.fixture
async def daemon(sandbox: Sandbox, receiver: Receiver, daemon_factory: DaemonFactory) -> Daemon:
    """The daemon with the default Zezhou policy: SMS to mobiles, voice to landlines, webhooks
    to the media centre and the carriers (their public channels)."""
    return await daemon_factory(twilio_config(sandbox, receiver), env=ENV)


@dataclass
class Console:
    daemon: Daemon
    browser: Browser
    errors: list[str] = field(default_factory=list)  # script errors on any page: a test ends with none

    async def context(self, viewport: ViewportSize | None = None) -> BrowserContext:
        ctx = await self.browser.new_context(viewport=viewport or DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
        ctx.set_default_timeout(30_000)
        return ctx

    async def sign_in(self, who: str, ctx: BrowserContext | None = None, path: str = "/") -> Page:
        """A page signed in with the token of principal `who`."""
        page = await (ctx or await self.context()).new_page()
        page.on("pageerror", lambda e: self.errors.append(f"{who}: {e}"))
        # refused API calls are logged by chromium as failed resources: expected in these tests
        page.on("console", lambda m: self.errors.append(f"{who}: {m.text}")
                if m.type == "error" and "Failed to load resource" not in m.text else None)
        await page.goto(self.daemon.url + path)
        await page.fill("#token", TOKENS[who][0])
        await page.click("#signin-form button[type=submit]")
        await expect(page.locator("#principal")).to_contain_text(who)
        return page


@pytest.fixture
async def console(browser: Browser, daemon: Daemon) -> Console:
    ARTIFACTS.mkdir(exist_ok=True)
    return Console(daemon, browser)
