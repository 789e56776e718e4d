"""The console's editing pages — 人员, 模板, 配置 (docs/console.md, docs/admin.md) — in real headless Chromium
against a real `warnd run` daemon, with the browser helpers of test_console.py.

Covered: a CSV import with a bad line shows the line-numbered problem and imports nothing, then a good file
imports and its people appear in the list (phones masked), are edited and removed; people from config are
read-only; a template edit is previewed (the new text, its segment count) and saved as an admin, a probe of
Python internals is refused by the sandbox, and a save over a file changed meanwhile is refused (409); a rules
section naming an unknown channel is refused with the file, the key path and the reason, and a good groups
section is saved with "restart to apply"; a viewer reads only; the pages fit a phone's width.

Screenshots go to
$WARND_SCREENSHOTS when it is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from conftest import AUTH, make_config_copy
from e2e.daemon import Daemon, free_port
from test_console import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PHONE,
    add_users,
    async_playwright,
    browser_missing,
    close_tab,
    no_sideways_scroll,
    screenshot,
    signed_in,
)

try:
    from playwright.async_api import Browser, Page, expect
except ImportError:  # reported by the `admin_site` fixture, as in test_console.py
    pass

# one browser and one daemon for the module (the `admin_site` fixture): under pytest-xdist its tests stay on one worker
pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(300),
    pytest.mark.xdist_group("console_admin"),
]

ADMIN, OPERATOR, VIEWER = "钱管理", "王调度", "赵查看"
USERS = {ADMIN: "admin", OPERATOR: "operator", VIEWER: "viewer"}
WANNIAN = "500228101201"  # 万年村
HEADER = "name,phone,role,area_code,lat,lon,language,groups,address,household,vulnerable,superior"
GOOD_CSV = (
    f"{HEADER}\n"
    f"导入甲,13900001111,public,{WANNIAN},,,zh-CN,public,万年村二组1号,wn-2-01,,\n"
    f"导入乙,13900002222,grid_worker,{WANNIAN},,,zh-CN,grid_workers,万年村二组2号,wn-2-02,elderly_alone,\n"
)
BAD_CSV = (  # line 3 has no usable phone; line 2 alone would be fine, but nothing may be imported
    f"{HEADER}\n"
    f"导入甲,13900001111,public,{WANNIAN},,,zh-CN,public,,,,\n"
    f"导入丙,12345,public,{WANNIAN},,,zh-CN,public,,,,\n"
)


@dataclass
class AdminSite:
    daemon: Daemon
    browser: Browser
    templates: Path  # the daemon's own copy of templates/

    @property
    def url(self) -> str:
        return self.daemon.url


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def admin_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AdminSite]:
    missing = browser_missing()
    if missing:
        if os.environ.get("WARND_SKIP_BROWSER") == "1":
            pytest.skip(f"{missing} missing and WARND_SKIP_BROWSER=1")
        pytest.fail(f"{missing} missing: apt-get install chromium (or set WARND_SKIP_BROWSER=1 to skip)")
    root = tmp_path_factory.mktemp("console-admin")
    config_dir = make_config_copy(root)  # with its own copy of templates/ (saving a template writes the file)
    templates = root / "templates"
    settings = yaml.safe_load((config_dir / "warnd.yaml").read_text(encoding="utf-8"))
    assert settings["templates"] == str(templates)
    add_users(config_dir, USERS)
    daemon = Daemon(config_dir, free_port())
    await daemon.start()
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            expect.set_options(timeout=20_000)
            try:
                yield AdminSite(daemon, browser, templates)
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(daemon.terminate)
        daemon.stop_quietly()


async def api_json(site: AdminSite, path: str) -> Any:
    async with aiohttp.ClientSession(headers=AUTH) as http:
        async with http.get(f"{site.url}{path}") as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()


async def choose_csv(page: Page, text: str) -> None:
    await page.set_input_files(
        "#import-file", files=[{"name": "people.csv", "mimeType": "text/csv", "buffer": text.encode("utf-8")}]
    )


# --- tests -------------------------------------------------------------------------------------------------------


async def test_subscribers_import_all_or_nothing_edit_and_remove(admin_site: AdminSite) -> None:
    site = admin_site
    tab = await signed_in(site, OPERATOR)  # type: ignore[arg-type]  # it only needs .browser and .url
    page = tab.page
    await page.click("nav a[data-page=subscribers]")
    await expect(page.locator("#subscriber-table tbody tr").first).to_be_visible()
    assert (await api_json(site, "/api/v1/subscribers?q=导入"))["subscribers"] == []

    # a bad line: the server's problem with its line number, and nothing imported (not even the good line 2)
    await choose_csv(page, BAD_CSV)
    await page.click("#import-submit")
    result = page.locator("#import-result")
    await expect(result.locator(".msg-error")).to_contain_text("未导入任何记录")
    problem = page.locator("#import-errors tbody tr")
    await expect(problem).to_have_count(1)
    await expect(problem.locator("td").nth(0)).to_have_text("3")
    await expect(problem.locator("td").nth(1)).to_have_text("phone")
    await expect(problem.locator("td").nth(2)).to_contain_text("12345")
    assert (await api_json(site, "/api/v1/subscribers?q=导入"))["subscribers"] == []
    await screenshot(page, "subscribers")

    # a good file: imported, and the people are in the list with masked phones
    await choose_csv(page, GOOD_CSV)
    await page.click("#import-submit")
    await expect(result.locator(".msg-ok")).to_contain_text("已导入 2 人")
    await page.fill("#subscriber-filters input[name=q]", "导入")
    await page.click("#subscriber-filters button[type=submit]")
    await expect(page).to_have_url(f"{site.url}/console/#/subscribers?q=%E5%AF%BC%E5%85%A5")
    rows = page.locator("#subscriber-table tbody tr")
    await expect(rows).to_have_count(2)
    first = rows.filter(has_text="导入甲")
    await expect(first.locator("td.phone")).to_have_text("139****1111")
    await expect(rows.filter(has_text="导入乙")).to_contain_text("网格员")
    assert "13900001111" not in await page.locator("main").inner_text()

    # edit one (the masked phone round-trips unchanged), then remove the other with a confirmation
    await first.locator("[data-action=edit]").click()
    form = page.locator("#subscriber-form")
    await expect(form.locator("input[name=phone]")).to_have_value("139****1111")
    await form.locator("input[name=address]").fill("万年村三组8号")
    await form.locator("#subscriber-save").click()
    await expect(page.locator("#subscriber-editor .msg-ok")).to_contain_text("已保存：导入甲")
    person = (await api_json(site, "/api/v1/subscribers?q=导入甲&phones=full"))["subscribers"][0]
    assert person["address"] == "万年村三组8号" and person["phone"] == "13900001111"
    second = rows.filter(has_text="导入乙")
    await second.locator("[data-action=remove]").click()
    await second.locator("[data-action=confirm-remove]").click()
    await expect(page.locator("#subscriber-editor .msg-ok")).to_contain_text("已删除：导入乙")
    await expect(rows).to_have_count(1)
    removed = (await api_json(site, "/api/v1/subscribers?q=导入乙&state=removed"))["subscribers"]
    assert [p["active"] for p in removed] == [False]

    # people from config: shown read-only with the reason
    await page.goto(f"{site.url}/console/#/subscribers?source=config")
    await expect(rows.first.locator("[data-action=view]")).to_be_visible()
    await expect(rows.locator("[data-action=edit]")).to_have_count(0)
    await rows.first.locator("[data-action=view]").click()
    await expect(form).to_contain_text("由配置文件")
    await expect(form.locator("#subscriber-save")).to_have_count(0)
    await expect(form.locator("input[name=name]")).to_be_disabled()
    await close_tab(tab)


async def test_template_preview_sandbox_and_save(admin_site: AdminSite) -> None:
    site = admin_site
    sms = site.templates / "zh-CN" / "sms.j2"
    original = sms.read_text(encoding="utf-8")
    tab = await signed_in(site, ADMIN)  # type: ignore[arg-type]
    page = tab.page
    await page.goto(f"{site.url}/console/#/templates?language=zh-CN&name=sms")
    editor = page.locator("#template-source")
    await expect(editor).to_have_value(original)
    cards = page.locator("#template-previews .channel-preview")
    await expect(cards).to_have_count(4)  # issued, updated, upgraded, cancelled

    # the edited text, previewed: exactly what the server rendered, with its segment count
    edited = "测试修改：本条为模板编辑测试，请以正式通知为准。" + original
    await editor.fill(edited)
    await expect(page.locator("#template-state")).to_have_text("已修改，未保存")
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/templates/preview")) as caught:
        await page.click("#template-preview")
    answer = await (await caught.value).json()
    shown = answer["previews"][0]
    assert "测试修改：" in shown["body"] and shown["segments"] >= 2
    first = cards.first
    await expect(first.locator("[data-field=body]")).to_have_text(shown["body"])
    await expect(first.locator("[data-field=segments]")).to_have_text(str(shown["segments"]))
    await expect(first.locator("[data-field=chars]")).to_have_text(str(shown["chars"]))
    await expect(page.locator("#template-result .msg-ok")).to_contain_text("尚未保存")
    assert sms.read_text(encoding="utf-8") == original  # a preview saves nothing
    await screenshot(page, "templates")

    # saved by an admin: the file has the new text, the old one is kept as .bak
    await page.click("#template-save")
    await expect(page.locator("#template-result .msg-ok")).to_contain_text("已保存，立即生效")
    assert sms.read_text(encoding="utf-8") == edited
    assert (site.templates / "zh-CN" / "sms.j2.bak").read_text(encoding="utf-8") == original

    # a probe of Python internals: the sandbox's error, on its line
    await editor.fill("第一行\n{{ ''.__class__ }}")
    await page.click("#template-preview")
    await expect(page.locator("#template-result .msg-error")).to_contain_text("预览失败")
    refused = page.locator("#template-errors tbody tr[data-kind=sandbox]")
    await expect(refused.first).to_be_visible()
    await expect(refused.first.locator("td").nth(0)).to_have_text("2")
    await expect(refused.first).to_contain_text("沙箱拒绝")
    await expect(cards).to_have_count(0)

    # changed on disk since the page read it: refused (409), not overwritten
    await editor.fill(edited + "\n")
    await asyncio.to_thread(sms.write_text, original, encoding="utf-8")
    await page.click("#template-save")
    await expect(page.locator("#template-result .msg-error")).to_contain_text("文件在您读取之后已被修改")
    assert sms.read_text(encoding="utf-8") == original
    await close_tab(tab)


async def test_config_sections_validated_and_saved(admin_site: AdminSite) -> None:
    site = admin_site
    tab = await signed_in(site, ADMIN)  # type: ignore[arg-type]
    page = tab.page
    await page.click("nav a[data-page=config]")
    await page.click(".segmented a >> text=响应规则")
    await expect(page).to_have_url(f"{site.url}/console/#/config/rules")
    await expect(page.locator("#config-table tbody tr").first).to_contain_text("rainstorm-blue")
    section = await api_json(site, "/api/v1/config/rules")
    rules = section["value"]
    rules[0]["targets"][0]["channels"][0] = "pigeon"
    await page.fill("#config-json", json.dumps(rules, ensure_ascii=False, indent=2))
    await page.click("#config-save")
    await expect(page.locator("#config-result .msg-error")).to_contain_text("校验未通过，未保存")
    problem = page.locator("#config-errors tbody tr").filter(has_text="pigeon")
    await expect(problem.locator("td").nth(0)).to_contain_text("rules.yaml")
    await expect(problem.locator("td").nth(1)).to_have_text("rules[0].targets[0].channels[0]")
    await expect(problem.locator("td").nth(2)).to_contain_text("unknown channel 'pigeon'")
    assert (await api_json(site, "/api/v1/config/rules"))["sha256"] == section["sha256"]  # nothing written
    await screenshot(page, "config")

    # not JSON: said at once, nothing sent
    await page.fill("#config-json", "[{")
    await page.click("#config-save")
    await expect(page.locator("#config-result .msg-error")).to_contain_text("JSON 格式有误")

    # a good groups section: saved, to take effect after a restart
    await page.click(".segmented a >> text=群组")
    await expect(page.locator("#config-table")).to_contain_text("社会公众")
    groups = (await api_json(site, "/api/v1/config/groups"))["value"]
    groups["public"]["label"] = "社会公众（全体）"
    await page.fill("#config-json", json.dumps(groups, ensure_ascii=False, indent=2))
    await page.click("#config-save")
    await expect(page.locator("#config-result .msg-ok")).to_contain_text("已保存，重启 warnd 后生效")
    await expect(page.locator("#restart-pending")).to_be_visible()
    text = await asyncio.to_thread((site.daemon.config_dir / "groups.yaml").read_text, encoding="utf-8")
    assert "社会公众（全体）" in text
    saved = await api_json(site, "/api/v1/config/groups")
    assert saved["restart_pending"] and saved["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    await close_tab(tab)


async def test_a_viewer_reads_only(admin_site: AdminSite) -> None:
    site = admin_site
    tab = await signed_in(site, VIEWER)  # type: ignore[arg-type]
    page = tab.page
    await page.goto(f"{site.url}/console/#/subscribers")
    await expect(page.locator("#subscriber-table tbody tr").first).to_be_visible()
    await expect(page.locator("#subscriber-add")).to_have_count(0)
    await expect(page.locator("#import-form")).to_have_count(0)
    await expect(page.locator("#subscribers-export")).to_have_count(0)
    await page.goto(f"{site.url}/console/#/templates")
    await expect(page.locator("#template-source")).to_have_attribute("readonly", "")
    await expect(page.locator("#template-preview")).to_have_count(0)
    await page.goto(f"{site.url}/console/#/config/terminals")
    await expect(page.locator("#config-table")).to_contain_text("LS-500228101201-01")
    await expect(page.locator("#config-json")).to_have_count(0)
    await expect(page.locator(".config-page")).to_contain_text("只有管理员可以修改配置")
    await close_tab(tab)


async def test_editing_pages_fit_a_phone(admin_site: AdminSite) -> None:
    site = admin_site
    tab = await signed_in(site, ADMIN, PHONE, is_mobile=True, has_touch=True)  # type: ignore[arg-type]
    page = tab.page
    for hash_, ready in (
        ("#/subscribers", "#subscriber-table tbody tr"),
        ("#/templates", "#template-previews .channel-preview"),
        ("#/config/rules", "#config-table tbody tr"),
    ):
        await page.goto(f"{site.url}/console/{hash_}")
        await expect(page.locator(ready).first).to_be_visible()
        await no_sideways_scroll(page, PHONE["width"])
    await screenshot(page, "config-phone")
    await close_tab(tab)
