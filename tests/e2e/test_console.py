"""The operator console in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright) against a
real `warnd run` daemon whose SMS go to a fake HTTP gateway on a real socket.

Covered: login and a wrong password; composing a red broadcast with the live preview (segment count,
recipients); the submitter refused self-approval; a second approver approving; the board updating live as the
gateway accepts and receipts arrive (no reload); the delivery log's filters, pages and CSV export (masked
phones); roles hiding what they may not do; a phone-sized screen without sideways scrolling. No page may
trigger a Content-Security-Policy violation or a script error.

Screenshots of every page go to $WARND_SCREENSHOTS when it is set (docs/screenshots/ is made with
``WARND_SCREENSHOTS=docs/screenshots``). Without /usr/bin/chromium the tests fail, unless WARND_SKIP_BROWSER=1.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from conftest import AUTH, cap_cn, edit_yaml, make_config_copy
from e2e.daemon import Daemon, cn_time, free_port
from support.gateway import FakeSmsGateway

from channels.webhook import sign

try:
    from playwright.async_api import Browser, BrowserContext, Page, Response, async_playwright, expect
except ImportError:  # reported by the `site` fixture: a failure, not a skip
    async_playwright = None  # type: ignore[assignment]

# one browser and one daemon for the module (the `site` fixture): under pytest-xdist its tests stay on one worker
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("console"),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "值班密码-correct-horse"
RECEIPT_SECRET = "console-test-receipt-secret"
SIGNATURE = "梁平区应急管理局"
# accounts made with `warnd users add` (the CLI, as an administrator would)
SUBMITTER, SECOND, OPERATOR, VIEWER = "张值班", "李局长", "王调度", "赵查看"
USERS = {SUBMITTER: "approver", SECOND: "approver", OPERATOR: "operator", VIEWER: "viewer"}
PINGJIN = "500228101000"  # 屏锦镇: the broadcast's township
WANG_DASHAN = "13800230021"  # a duty person in 龙溪村 (config/subscribers.yaml)
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOTS = os.environ.get("WARND_SCREENSHOTS")


@dataclass
class Site:
    daemon: Daemon
    gateway: FakeSmsGateway
    browser: Browser
    alert_id: int  # the CAP warning posted at the start (24 SMS through the gateway)

    @property
    def url(self) -> str:
        return self.daemon.url


async def wait_for(predicate: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout} s")
        await asyncio.sleep(0.1)


def add_users(config_dir: Path, users: dict[str, str] = USERS) -> None:
    for name, role in users.items():
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "warnd",
                "users",
                "add",
                name,
                "--role",
                role,
                "--password-stdin",
                "-c",
                str(config_dir),
            ],
            input=PASSWORD + "\n",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def through_gateway(config_dir: Path, gateway: FakeSmsGateway) -> None:
    """SMS through the fake gateway (which confirms nothing by itself: delivered needs a receipt), receipts
    accepted on the signed webhook, and the board recomputed twice a second."""

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["sms"] = {
            "adapter": "sms_http",
            "url": gateway.url,
            "signature": SIGNATURE,
            "max_recipients_per_request": 2,
            "concurrency": 1,
            "timeout": 10,
        }

    def settings(data: dict[str, Any]) -> None:
        data["api"]["feedback_secrets"] = {"sms": RECEIPT_SECRET}
        data["api"]["live_every"] = "0.5s"

    edit_yaml(config_dir / "channels.yaml", channels)
    edit_yaml(config_dir / "warnd.yaml", settings)


def browser_missing() -> str | None:
    """What is missing to drive a browser, if anything."""
    if async_playwright is None:
        return "the playwright package"
    return None if CHROMIUM.exists() else str(CHROMIUM)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    missing = browser_missing()
    if missing:
        if os.environ.get("WARND_SKIP_BROWSER") == "1":
            pytest.skip(f"{missing} missing and WARND_SKIP_BROWSER=1")
        pytest.fail(f"{missing} missing: apt-get install chromium (or set WARND_SKIP_BROWSER=1 to skip)")
    config_dir = make_config_copy(tmp_path_factory.mktemp("console"))
    async with FakeSmsGateway() as gateway:
        through_gateway(config_dir, gateway)
        add_users(config_dir)
        daemon = Daemon(config_dir, free_port())
        await daemon.start()
        try:
            alert = cap_cn(identifier="console-1", sent=cn_time(), expires=cn_time(timedelta(hours=6)))
            async with aiohttp.ClientSession(headers=AUTH) as http:
                async with http.post(f"{daemon.url}/api/v1/alerts", data=alert) as resp:
                    assert resp.status == 201, await resp.text()
                    alert_id = (await resp.json())["id"]
            await wait_for(
                lambda: len(sent_for(gateway, alert_id)) == 24, what="the warning's 24 SMS accepted"
            )
            async with async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                expect.set_options(timeout=20_000)
                try:
                    yield Site(daemon, gateway, browser, alert_id)
                finally:
                    await browser.close()
        finally:
            await asyncio.to_thread(daemon.terminate)  # the gateway keeps answering while it stops
            daemon.stop_quietly()


def sent_for(gateway: FakeSmsGateway, alert_id: int) -> list[Any]:
    """What the gateway accepted for one alert revision (idempotency keys start with its id)."""
    return [s for s in gateway.sent if s.key.startswith(f"{alert_id}:")]


@dataclass
class Tab:
    """One browser context (one person) and its page, collecting CSP violations and script errors."""

    context: BrowserContext
    page: Page
    problems: list[str]


async def open_tab(site: Site, viewport: dict[str, int] = DESKTOP, **options: Any) -> Tab:
    context = await site.browser.new_context(
        viewport=viewport, locale="zh-CN", timezone_id="Asia/Shanghai", accept_downloads=True, **options
    )
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    return Tab(context, page, problems)


async def close_tab(tab: Tab) -> None:
    await tab.context.close()
    assert tab.problems == [], tab.problems


async def log_in(site: Site, page: Page, name: str, password: str = PASSWORD) -> None:
    await page.goto(f"{site.url}/")
    await page.fill("#login-name", name)
    await page.fill("#login-password", password)
    await page.click("form button[type=submit]")
    await expect(page.locator("#who-name")).to_have_text(name)


async def signed_in(site: Site, name: str, viewport: dict[str, int] = DESKTOP, **options: Any) -> Tab:
    """A new tab (``open_tab``) logged in as ``name``."""
    tab = await open_tab(site, viewport, **options)
    await log_in(site, tab.page, name)
    return tab


async def screenshot(page: Page, name: str) -> None:
    """The whole page as $WARND_SCREENSHOTS/<name>.png, when that is set (Playwright makes the directory)."""
    if SHOTS:
        await page.evaluate("window.scrollTo(0, 0)")
        await page.screenshot(path=os.path.join(SHOTS, f"{name}.png"), full_page=True)


async def no_sideways_scroll(page: Page, width: int) -> None:
    """Nothing on the page is wider than the screen (a phone would zoom out or scroll sideways)."""
    widths = await page.evaluate(
        """() => [document.documentElement.scrollWidth,
                  Math.max(...[...document.querySelectorAll("main *")]
                    .filter(e => !e.parentElement.closest(".table-wrap"))  // tables scroll in their box
                    .map(e => e.getBoundingClientRect().right))]"""
    )
    assert max(widths) <= width, f"wider than the {width} px screen: {widths}"


async def api_json(site: Site, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.request(method, f"{site.url}{path}", json=body) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()


def previewed(response: Response, draft: dict[str, Any]) -> bool:
    """Whether ``response`` answers the page's preview request for exactly ``draft``."""
    return response.url.endswith("/api/v1/broadcasts/preview") and response.request.post_data_json == draft


async def post_receipts(site: Site, message_ids: list[str]) -> None:
    """DELIVRD for these messages on the signed receipt webhook, as the SMS provider would report them."""
    body = json.dumps([{"message_id": m, "state": "DELIVRD", "channel": "sms"} for m in message_ids]).encode()
    stamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Warnd-Timestamp": stamp,
        "X-Warnd-Signature": sign(RECEIPT_SECRET, stamp, body),
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{site.url}/api/v1/feedback/sms", data=body, headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            counts = await resp.json()
    assert counts["matched"] == len(message_ids), counts


# --- tests -------------------------------------------------------------------------------------------------------


async def test_login_wrong_password_and_logout(site: Site) -> None:
    tab = await open_tab(site)
    page = tab.page
    response = await page.goto(f"{site.url}/")  # → 302 /console/
    assert response is not None and response.url == f"{site.url}/console/"
    headers = response.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    await expect(page.locator("#login-name")).to_be_visible()
    await expect(page.locator("#topbar")).to_be_hidden()  # nothing but the login before a session
    await screenshot(page, "login")

    await page.fill("#login-name", SUBMITTER)
    await page.fill("#login-password", PASSWORD + "x")
    await page.click("form button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("用户名或密码错误，请重新输入。")
    await expect(page.locator("#login-password")).to_have_value("")

    await page.fill("#login-password", PASSWORD)
    await page.click("form button[type=submit]")
    await expect(page.locator("#who-name")).to_have_text(SUBMITTER)
    await expect(page.locator("#who-role")).to_have_text("审批人")
    await expect(page).to_have_url(f"{site.url}/console/#/board")
    await expect(page.locator("h1")).to_have_text("值班看板")

    await page.click("#logout")
    await expect(page.locator("#login-name")).to_be_visible()
    await expect(page.locator("#notice")).to_have_text("已退出登录。")
    await page.goto(f"{site.url}/console/#/log")  # the session is gone server-side: back to the login
    await expect(page.locator("#login-name")).to_be_visible()
    await close_tab(tab)


async def test_red_broadcast_two_people_and_the_live_board(site: Site) -> None:
    first = await signed_in(site, SUBMITTER)
    page = first.page
    await page.goto(f"{site.url}/console/#/compose")
    await page.check(f"input[data-code='{PINGJIN}']")
    await expect(page.locator("input[data-code='500228101201']")).to_be_checked()  # its villages with it
    await page.check("input[data-channel='sms']")
    await page.check("input[data-channel='loudspeaker']")
    await page.select_option("#hazard", label="暴雨")
    draft: dict[str, Any] = {
        "areas": [PINGJIN],
        "groups": [],
        "channels": ["loudspeaker", "sms"],
        "status": "Actual",
        "hazard": "11B03",
        "colour": "red",
        "expires_in": 6 * 3600,
    }
    # the page shows exactly what the server previewed for the whole draft (earlier, partial previews aside)
    async with page.expect_response(lambda r: previewed(r, draft)) as caught:
        await page.check("input[name=colour][value=red]")
    expected = await (await caught.value).json()
    assert expected["needs_approval"]
    notice = page.locator("#approval-notice")
    await expect(notice).to_contain_text("需要第二人审批")
    await expect(notice).to_contain_text(expected["approval_reasons"][0])
    sms = page.locator(".channel-preview[data-channel='sms']")
    sms_expected = next(c for c in expected["channels"] if c["channel"] == "sms")
    await expect(sms.locator("[data-field=body]")).to_have_text(sms_expected["body"])
    await expect(sms.locator("[data-field=segments]")).to_have_text(str(sms_expected["segments"]))
    await expect(sms.locator("[data-field=chars]")).to_have_text(str(sms_expected["chars"]))
    await expect(sms.locator("[data-field=recipients]")).to_have_text(str(sms_expected["recipients"]))
    await expect(page.locator("#preview-total")).to_have_text(str(expected["recipients"]))
    assert sms_expected["recipients"] > 0 and sms_expected["segments"] >= 1
    assert sms_expected["body"].startswith(f"【{SIGNATURE}】")
    spoken = page.locator(".channel-preview[data-channel='loudspeaker'] [data-field=body]")
    await expect(spoken).to_contain_text("请注意")

    # typing more text: the preview follows (debounced), longer and in more segments
    extra = (
        "请屏锦镇沿河群众立即转移到安全地点，远离河道、低洼地带和高坎下，不要涉水过河，转移后不要擅自返回，"
        "服从统一安排，相互转告。"
    )
    async with page.expect_response(lambda r: previewed(r, {**draft, "text": extra})) as caught:
        await page.fill("#text", extra)
    longer = await (await caught.value).json()
    sms_longer = next(c for c in longer["channels"] if c["channel"] == "sms")
    assert sms_longer["chars"] > 70 and sms_longer["chars"] > sms_expected["chars"]
    assert sms_longer["segments"] >= 2 and sms_longer["segments"] >= sms_expected["segments"]
    await expect(sms.locator("[data-field=segments]")).to_have_text(str(sms_longer["segments"]))
    await expect(sms.locator("[data-field=chars]")).to_have_text(str(sms_longer["chars"]))
    await expect(page.locator("#compose-submit")).to_have_text("提交审批…")
    await screenshot(page, "composer")

    await page.click("#compose-submit")
    await page.click("#compose-confirm-send")
    await expect(page.locator("#compose-result")).to_contain_text("已提交审批")
    pending = (await api_json(site, "GET", "/api/v1/broadcasts?status=pending"))["broadcasts"]
    broadcast_id = pending[0]["id"]
    assert pending[0]["submitted_by"] == f"user:{SUBMITTER}"

    # the submitter may not approve their own broadcast: the server refuses, the page says so
    await page.goto(f"{site.url}/console/#/approvals")
    card = page.locator(f"[data-broadcast-id='{broadcast_id}']")
    await expect(card).to_contain_text("这是您本人提交的广播")
    await card.locator("[data-action=approve]").click()
    await expect(card.locator(".msg-error")).to_contain_text("不能审批自己提交的广播")
    await expect(card.locator(".msg-error")).to_contain_text("服务器拒绝了此操作")
    await screenshot(page, "approvals")
    assert (await api_json(site, "GET", f"/api/v1/broadcasts/{broadcast_id}"))["status"] == "pending"

    # the submitter watches the board; a second approver approves in another browser
    await page.goto(f"{site.url}/console/#/board")
    await expect(page.locator("#live-status")).to_have_text("实时连接")
    await page.evaluate("window.sameDocument = true")
    second = await signed_in(site, SECOND)
    await second.page.goto(f"{site.url}/console/#/approvals")
    other = second.page.locator(f"[data-broadcast-id='{broadcast_id}']")
    await expect(other).not_to_contain_text("这是您本人提交的广播")
    await other.locator("input[name=note]").fill("同意发布")
    await other.locator("[data-action=approve]").click()
    await expect(other.locator(".msg-ok")).to_contain_text("已批准")
    approved = await api_json(site, "GET", f"/api/v1/broadcasts/{broadcast_id}")
    assert approved["status"] == "sent" and approved["decided_by"] == f"user:{SECOND}"
    alert_id = approved["alert_id"]
    await close_tab(second)

    # the new warning appears on the submitter's board by itself; its numbers follow the gateway and receipts
    card = page.locator(f"[data-alert-id='{alert_id}']")
    await expect(card).to_be_visible()
    await expect(card.locator(".colour-tag")).to_contain_text("红色")
    await wait_for(
        lambda: len(sent_for(site.gateway, alert_id)) == sms_expected["recipients"], what="accepted"
    )
    accepted = sent_for(site.gateway, alert_id)
    delivered = card.locator("[data-stat=delivered]")
    await expect(card.locator("[data-stat=sent]")).to_have_text(str(len(accepted)))
    await expect(delivered).to_have_text("0")  # the gateway took them; nobody confirmed receipt yet
    half = len(accepted) // 2
    await post_receipts(site, [s.message_id for s in accepted[:half]])
    await expect(delivered).to_have_text(str(half))
    await post_receipts(site, [s.message_id for s in accepted[half:]])
    await expect(delivered).to_have_text(str(len(accepted)))
    assert await page.evaluate("window.sameDocument === true")  # never reloaded
    await screenshot(page, "board")

    # the alert's page: its timeline and deliveries by channel and status
    await card.locator("h2 a").click()
    await expect(page).to_have_url(f"{site.url}/console/#/alerts/{alert_id}")
    await expect(page.locator(".timeline li.tl-received")).to_have_count(1)
    await expect(page.locator(".timeline li.tl-deliveries", has_text="短信").first).to_be_visible()
    row = page.locator(".matrix tr[data-channel='sms']")
    await expect(row).to_contain_text(str(len(accepted)))
    await expect(page.locator(".actions")).to_contain_text("解除预警")  # an approver may act on it
    await screenshot(page, "alert-detail")
    await close_tab(first)


async def test_delivery_log_filters_pages_and_csv(site: Site) -> None:
    tab = await signed_in(site, OPERATOR)
    page = tab.page
    await page.goto(f"{site.url}/console/#/log")
    rows = page.locator("#log-table tbody tr")
    await expect(rows.first).to_be_visible()

    form = page.locator("#log-filters")
    await form.locator("input[name=alert]").fill(str(site.alert_id))
    await form.locator("select[name=channel]").select_option("sms")
    await form.locator("select[name=status]").select_option("sent")
    await form.locator("input[name=phone_suffix]").fill(WANG_DASHAN[-4:])
    await form.locator("button[type=submit]").click()
    await expect(page).to_have_url(
        f"{site.url}/console/#/log?alert={site.alert_id}&channel=sms&status=sent&phone_suffix=0021"
    )
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td.phone")).to_have_text("138****0021")
    await expect(rows.first).to_contain_text("王大山")
    await expect(rows.first).to_contain_text("已发送")

    # the CSV export: the same filters, downloaded with the session cookie
    async with page.expect_download() as caught:
        await page.click("#export-csv")
    download = await caught.value
    path = await download.path()
    assert path is not None
    text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0][:3] == ["编号 id", "预警 alert_id", "预警链 root_id"] and "手机号 phone" in table[0]
    assert len(table) == 2
    phone = table[1][table[0].index("手机号 phone")]
    assert phone == "138****0021" and WANG_DASHAN not in text

    await form.locator("select[name=status]").select_option("delivered")  # nothing confirmed for this one
    await form.locator("button[type=submit]").click()
    await expect(page.locator("#log-results")).to_contain_text("没有符合条件的记录")

    # 下一页 / 上一页 over the whole log, 20 a page
    await page.goto(f"{site.url}/console/#/log?limit=20")
    await expect(rows).to_have_count(20)
    await screenshot(page, "log")
    first_page = await rows.first.get_attribute("data-delivery-id")
    await page.click("#log-next")
    await expect(page.locator(".pager")).to_contain_text("第 2 页")
    second_first = await rows.first.get_attribute("data-delivery-id")
    assert first_page and second_first and int(second_first) < int(first_page)  # newest first
    await page.click(".pager button >> text=上一页")
    await expect(rows.first).to_have_attribute("data-delivery-id", first_page)
    await close_tab(tab)


async def test_dashboard_draws_its_charts(site: Site) -> None:
    tab = await signed_in(site, VIEWER)
    page = tab.page
    await page.goto(f"{site.url}/console/#/dashboard")
    await expect(page.locator("svg.chart")).to_have_count(3)  # coverage, time to delivery, channels
    await expect(page.locator("svg.chart .target")).to_have_count(1)  # the coverage target line
    await expect(page.locator("svg.chart .target-label")).to_have_text("目标 90.0%")
    await expect(page.locator(".dashboard-page")).to_contain_text("数据源状态")
    await screenshot(page, "dashboard")
    await close_tab(tab)


async def test_a_viewer_sees_no_actions(site: Site) -> None:
    tab = await signed_in(site, VIEWER)
    page = tab.page
    await expect(page.locator("#who-role")).to_have_text("查看员")
    await expect(page.locator("nav a[data-page=compose]")).to_be_hidden()
    await page.goto(f"{site.url}/console/#/compose")
    await expect(page.locator("main")).to_contain_text("不能使用此页面")
    await page.goto(f"{site.url}/console/#/log")
    await expect(page.locator("#log-table tbody tr").first).to_be_visible()
    await expect(page.locator("#export-csv")).to_have_count(0)
    await page.goto(f"{site.url}/console/#/alerts/{site.alert_id}")
    await expect(page.locator(".timeline")).to_be_visible()
    await expect(page.locator(".actions")).to_have_count(0)
    await close_tab(tab)


async def test_phone_sized_screen(site: Site) -> None:
    tab = await signed_in(site, OPERATOR, PHONE, is_mobile=True, has_touch=True)
    page = tab.page
    await expect(page.locator(".alert-card").first).to_be_visible()
    await expect(page.locator("#menu-toggle")).to_be_visible()
    await expect(page.locator("#nav")).to_be_hidden()  # folded behind 菜单
    await no_sideways_scroll(page, PHONE["width"])
    await screenshot(page, "board-phone")

    await page.click("#menu-toggle")
    await expect(page.locator("#nav")).to_be_visible()
    await page.click("nav a[data-page=log]")
    await expect(page.locator("#nav")).to_be_hidden()
    table = page.locator(".table-wrap").first
    await expect(page.locator("#log-table tbody tr").first).to_be_visible()
    await no_sideways_scroll(page, PHONE["width"])
    # the table scrolls inside its box instead
    assert await table.evaluate("el => el.scrollWidth > el.clientWidth")
    await screenshot(page, "log-phone")
    await close_tab(tab)


async def test_lifting_a_red_warning_waits_for_a_second_person(site: Site) -> None:
    tab = await signed_in(site, OPERATOR)
    page = tab.page
    await page.goto(f"{site.url}/console/#/alerts/{site.alert_id}")
    actions = page.locator(".actions")
    await actions.locator("button.danger").click()  # no reason yet
    await expect(actions.locator(".action-result")).to_contain_text("请填写解除原因")
    await actions.locator("textarea[name=reason]").fill("雨势减弱，风险解除")
    await actions.locator("button.danger").click()  # not confirmed yet
    await expect(actions.locator(".action-result")).to_contain_text("请勾选确认")
    await actions.locator("input[name=confirm]").check()
    await actions.locator("button.danger").click()
    await expect(actions.locator(".action-result")).to_contain_text("需要第二人审批后才会发出")
    pending = (await api_json(site, "GET", "/api/v1/broadcasts?status=pending"))["broadcasts"]
    assert [(b["kind"], b["submitted_by"]) for b in pending] == [("cancel", f"user:{OPERATOR}")]
    await expect(page.locator("#pending-badge")).to_have_text("1")
    alert = await api_json(site, "GET", f"/api/v1/alerts/{site.alert_id}")
    assert alert["state"] == "active"  # nothing lifted before the second person agrees
    await close_tab(tab)
