"""Subscribers, templates and config sections over real HTTP (warnd/api_admin.py): lists with filters, keyset
pages and masked phones; adding, editing and removing people (config people read-only); the CSV import — all or
nothing — and export; template previews in the sandbox process, sandbox escapes refused, a saved template in the
next alert's SMS; config sections checked like check-config before they are written. A copy of config/ and of
templates/ per test, an App on a real SQLite file, aiohttp test servers."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient

from tests.conftest import ROOT, cap_cn, file_loudspeaker, make_config_copy
from tests.support.api import api_client
from warnd import api_admin, template_sandbox
from warnd.app import App
from warnd.auth import ADMIN, OPERATOR, ROLES, VIEWER
from warnd.config import load_config
from warnd.store import AudienceQuery
from warnd.template_sandbox import SAMPLE_VILLAGE, SandboxFailed, TemplateSandbox

CONFIG_PHONE = "13800230043"  # 谢芳 (config/subscribers.yaml), public, 万年村
WANNIAN = "500228101201"
UPDATE = cap_cn(
    identifier="50022841600000_20240712060000",
    msg_type="Update",
    sent="2024-07-12 06:00:00+08:00",
    references="梁平区气象台,50022841600000_20240712053000,2024-07-12T05:30:00+08:00",
)
HEADER = "name,phone,role,area_code,lat,lon,language,groups,address,household,vulnerable,superior\n"


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """config/ with loudspeakers through the file adapter (make_config_copy copies templates/ too: saving a
    template never touches the project's own)."""
    target = make_config_copy(tmp_path)
    file_loudspeaker(target)
    return target


@pytest.fixture
async def client(app: App) -> AsyncIterator[TestClient]:
    async with api_client(app) as test:
        yield test


@pytest.fixture
async def as_role(app: App) -> dict[str, dict[str, str]]:
    """Authorization headers of a database token per role."""
    return {
        role: {
            "Authorization": f"Bearer {await app.accounts.add_token(f'admin-api-{role}', role, actor='t')}"
        }
        for role in ROLES
    }


def text_of(path: Path | str) -> str:
    return Path(path).read_text(encoding="utf-8")


async def audit(app: App, action: str) -> list[dict[str, Any]]:
    return [e for e in await app.store.audit_entries(500) if e["action"] == action]


async def everyone(app: App) -> set[int]:
    """Ids of every recipient an audience without restrictions reaches (active ones only)."""
    rows = await app.store.audience_chunk(AudienceQuery(groups=None, everywhere=True), 0, 100_000)
    return {r["id"] for r in rows}


# --- subscribers ------------------------------------------------------------------------------------------------


async def test_list_filters_pages_and_masks_phones(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    resp = await client.get("/api/v1/subscribers", params={"q": "0043"}, headers=as_role[VIEWER])
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    [xie] = data["subscribers"]
    assert xie["name"] == "谢芳" and xie["phone"] == "138****0043" and data["phones"] == "masked"
    assert xie["source"] == "config" and not xie["editable"] and xie["area_name"]
    # full phones: an admin's, audited; an operator is refused
    refused = await client.get("/api/v1/subscribers", params={"phones": "full"}, headers=as_role[OPERATOR])
    assert refused.status == 403
    full = await client.get("/api/v1/subscribers", params={"q": "谢", "phones": "full"})
    assert [s["phone"] for s in (await full.json())["subscribers"]] == [CONFIG_PHONE]
    [unmask] = await audit(app, "subscribers.unmask")
    assert unmask["actor"] == "token:tests" and unmask["detail"]["filters"] == {"q": "谢"}
    # filters
    township = await (await client.get("/api/v1/subscribers", params={"village": "500228101000"})).json()
    assert township["subscribers"] and all(
        s["area_code"].startswith("500228101") for s in township["subscribers"]
    )
    duty = await (await client.get("/api/v1/subscribers", params={"group": "duty_persons"})).json()
    assert {s["role"] for s in duty["subscribers"]} == {
        "duty_person",
        "village_cadre",
    }  # by the group's roles
    for params in ({"role": "nobody"}, {"group": "nobody"}, {"village": "12a"}, {"state": "gone"}):
        bad = await client.get("/api/v1/subscribers", params=params)
        assert bad.status == 400, params
        assert next(iter(params)) in (await bad.json())["error"]
    # keyset pages: every person once, in id order
    seen: list[int] = []
    after = 0
    while True:
        page = await (await client.get("/api/v1/subscribers", params={"limit": 4, "after": after})).json()
        seen += [s["id"] for s in page["subscribers"]]
        if page["next_after"] is None:
            break
        after = page["next_after"]
    assert seen == sorted(set(seen)) and len(seen) == len(load_config(app.config.directory).subscribers)


async def test_add_edit_and_remove_an_imported_person(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    person = {
        "name": "测试员",
        "phone": "13900001111",
        "role": "public",
        "area_code": WANNIAN,
        "groups": ["public"],
        "vulnerable": ["elderly_alone"],
        "address": "万年村五组1号",
    }
    assert (await client.post("/api/v1/subscribers", json=person, headers=as_role[VIEWER])).status == 403
    before = await app.store.recipient_count()
    # bad fields: every one named, nothing written
    bad = await client.post(
        "/api/v1/subscribers", json={**person, "phone": "12", "area_code": "5002", "groups": ["nosuch"]}
    )
    assert bad.status == 400
    problems = await bad.json()
    assert {p["field"] for p in problems["errors"]} == {"phone", "area_code", "groups"}
    assert "phone" in problems["error"] and await app.store.recipient_count() == before
    unknown = await client.post("/api/v1/subscribers", json={**person, "email": "x@example.cn"})
    assert unknown.status == 400 and "email" in (await unknown.json())["error"]
    # a config person's phone: edit config instead
    taken = await client.post("/api/v1/subscribers", json={**person, "phone": CONFIG_PHONE})
    assert taken.status == 409 and "subscribers.yaml" in (await taken.json())["error"]

    created = await client.post("/api/v1/subscribers", json=person, headers=as_role[OPERATOR])
    assert created.status == 201, await created.text()
    added = await created.json()
    assert added["phone"] == "139****1111" and added["editable"] and added["groups"] == ["public"]
    assert added["id"] in await everyone(app)
    again = await client.post("/api/v1/subscribers", json=person)
    assert again.status == 409 and (await again.json())["id"] == added["id"]

    # edit: fields left out stay, the phone sent back masked stays
    path = f"/api/v1/subscribers/{added['id']}"
    changed = await client.put(
        path, json={"name": "测试员二", "phone": "139****1111", "groups": ["public", "grid_workers"]}
    )
    assert changed.status == 200, await changed.text()
    edited = await changed.json()
    assert edited["name"] == "测试员二" and edited["address"] == "万年村五组1号"
    assert set(edited["groups"]) == {"public", "grid_workers"}
    full = await (await client.get(path, params={"phones": "full"})).json()
    assert full["phone"] == "13900001111"
    bad_edit = await client.put(path, json={"lat": "north"})
    assert bad_edit.status == 400 and (await bad_edit.json())["errors"][0]["field"] == "lat"
    [update] = await audit(app, "subscribers.update")
    assert update["target"] == f"recipient:{added['id']}" and "name" in update["detail"]["changed"]

    # config people are read-only here
    xie = (await (await client.get("/api/v1/subscribers", params={"q": "0043"})).json())["subscribers"][0]
    for method in ("PUT", "DELETE"):
        resp = await client.request(method, f"/api/v1/subscribers/{xie['id']}", json={"name": "改名"})
        assert resp.status == 409, method
        assert "subscribers.yaml" in (await resp.json())["error"]

    # removal: out of every audience and the default list, still readable, history kept
    removed = await client.delete(path, headers=as_role[OPERATOR])
    assert removed.status == 200 and (await removed.json())["already_removed"] is False
    assert added["id"] not in await everyone(app)
    listed = await (await client.get("/api/v1/subscribers", params={"q": "1111"})).json()
    assert listed["subscribers"] == []
    gone = await (await client.get("/api/v1/subscribers", params={"q": "1111", "state": "removed"})).json()
    assert [s["id"] for s in gone["subscribers"]] == [added["id"]]
    assert (await client.put(path, json={"name": "x"})).status == 409
    assert (await (await client.delete(path)).json())["already_removed"] is True
    assert len(await audit(app, "subscribers.remove")) == 1
    # adding the phone again brings the same row back
    back = await client.post("/api/v1/subscribers", json=person)
    assert back.status == 201 and (await back.json())["id"] == added["id"]
    assert [e["target"] for e in await audit(app, "subscribers.restore")] == [f"recipient:{added['id']}"]


async def test_removing_someone_keeps_their_delivery_history(client: TestClient, app: App) -> None:
    created = await client.post(
        "/api/v1/subscribers", json={"name": "历史", "phone": "13900002222", "area_code": WANNIAN}
    )
    person = (await created.json())["id"]
    [result] = await app.pipeline.ingest(cap_cn(), source="t")
    assert result.alert_id is not None
    rows = await app.store.deliveries_page({"recipient_id": person}, limit=100)
    assert rows, "the red rainstorm reaches everyone in the district"
    assert (await client.delete(f"/api/v1/subscribers/{person}")).status == 200
    assert await app.store.deliveries_page({"recipient_id": person}, limit=100) == rows
    history = await client.get(f"/api/v1/recipients/{person}/history")
    assert history.status == 200
    body = await history.json()
    assert body["recipient"]["active"] is False and len(body["deliveries"]) == len(rows)


async def test_csv_import_is_all_or_nothing_and_export_round_trips(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    before = await app.store.recipient_count()
    bad = (
        HEADER
        + f"好人甲,13900003331,public,{WANNIAN},,,zh-CN,public,,,,\n"
        + "坏人乙,12345,public,5002,,,zh-CN,nosuch,,,,\n"
        + f"配置人,{CONFIG_PHONE},public,{WANNIAN},,,,,,,,\n"
        + f"好人丙,13900003333,public,{WANNIAN},,,zh-CN,,,,,\n"
    )
    headers = {**as_role[OPERATOR], "Content-Type": "text/csv"}
    resp = await client.post("/api/v1/subscribers/import", data=bad.encode(), headers=headers)
    assert resp.status == 400, await resp.text()
    answer = await resp.json()
    assert "未导入" in answer["error"] and "nothing was imported" in answer["error"]
    assert {(p["line"], p["field"]) for p in answer["errors"]} == {
        (3, "phone"),
        (3, "area_code"),
        (3, "groups"),
        (4, "phone"),
    }
    assert any("subscribers.yaml" in p["message"] for p in answer["errors"] if p["line"] == 4)
    assert await app.store.recipient_count() == before  # not even the good rows
    [rejected] = await audit(app, "subscribers.import_rejected")
    assert rejected["detail"]["problems"] == 4 and rejected["remote"] == "127.0.0.1"

    good = (
        HEADER
        + f"好人甲,13900003331,public,{WANNIAN},30.5,107.8,zh-CN,public|grid_workers,,,elderly_alone,\n"
        + f"好人丙,13900003333,grid_worker,{WANNIAN},,,zh-CN,,万年村一组,wn-9,,13800230022\n"
    )
    viewer = await client.post(
        "/api/v1/subscribers/import",
        data=good.encode(),
        headers={**as_role[VIEWER], "Content-Type": "text/csv"},
    )
    assert viewer.status == 403
    done = await client.post("/api/v1/subscribers/import", data=("\ufeff" + good).encode(), headers=headers)
    assert done.status == 200, await done.text()
    assert await done.json() == {"rows": 2, "imported": 2}
    assert await app.store.recipient_count() == before + 2
    [imported] = await audit(app, "subscribers.import")
    assert imported["detail"]["rows"] == 2 and imported["actor"] == "token:admin-api-operator"

    # export: the CLI's columns, masked; ?source=import leaves config people out; full phones for an admin
    masked = await client.get("/api/v1/subscribers/export.csv", headers=as_role[OPERATOR])
    assert masked.status == 200 and masked.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO((await masked.text()).removeprefix("\ufeff"))))
    assert len(rows) == len(app.config.subscribers) + 2
    assert all("****" in r["phone"] for r in rows)
    assert (
        await client.get(
            "/api/v1/subscribers/export.csv", params={"phones": "full"}, headers=as_role[OPERATOR]
        )
    ).status == 403
    full = await client.get("/api/v1/subscribers/export.csv", params={"phones": "full", "source": "import"})
    text = (await full.text()).removeprefix("\ufeff")
    exported = list(csv.DictReader(io.StringIO(text)))
    assert [r["phone"] for r in exported] == ["13900003331", "13900003333"]
    assert exported[0]["groups"] in ("public|grid_workers", "grid_workers|public")
    assert exported[1]["superior"] == "13800230022" and exported[0]["vulnerable"] == "elderly_alone"
    exports = await audit(app, "subscribers.export")
    assert [(e["detail"]["phones"], e["detail"]["rows"]) for e in exports] == [
        ("full", 2),
        ("masked", len(rows)),
    ]
    # what was exported imports again unchanged
    again = await client.post("/api/v1/subscribers/import", data=text.encode(), headers=headers)
    assert again.status == 200 and (await again.json())["imported"] == 2
    assert await app.store.recipient_count() == before + 2


async def test_import_limits_and_encodings(
    client: TestClient, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"Content-Type": "text/csv"}
    rows = HEADER + "".join(f"人{i},1390000{i:04d},public,{WANNIAN},,,,,,,,\n" for i in range(3))
    count = await app.store.recipient_count()
    monkeypatch.setattr(api_admin, "MAX_IMPORT_ROWS", 2)
    many = await client.post("/api/v1/subscribers/import", data=rows.encode(), headers=headers)
    assert many.status == 413 and "2 rows" in (await many.json())["error"]
    monkeypatch.setattr(api_admin, "MAX_IMPORT_BYTES", 100)
    large = await client.post("/api/v1/subscribers/import", data=rows.encode(), headers=headers)
    assert large.status == 413 and "100" in (await large.json())["error"]
    monkeypatch.undo()
    assert await app.store.recipient_count() == count  # refused whole
    gbk = await client.post(
        "/api/v1/subscribers/import", data=rows.encode("gb18030"), headers={"Content-Type": "text/csv"}
    )
    assert gbk.status == 400 and "gb18030" in (await gbk.json())["error"]
    said = await client.post(
        "/api/v1/subscribers/import",
        data=rows.encode("gb18030"),
        headers={"Content-Type": "text/csv; charset=gb18030"},
    )
    assert said.status == 200 and (await said.json())["imported"] == 3
    assert await app.store.recipient_count() == count + 3
    empty = await client.post("/api/v1/subscribers/import", data=b"", headers=headers)
    assert empty.status == 400
    huge = await client.post("/api/v1/subscribers", json={"name": "x" * 20_000})
    assert huge.status == 413


# --- templates ------------------------------------------------------------------------------------------------


async def test_templates_are_listed_and_previewed_in_the_sandbox(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    listed = await client.get("/api/v1/templates", headers=as_role[VIEWER])
    assert listed.status == 200
    templates = {(t["language"], t["name"]): t for t in (await listed.json())["templates"]}
    assert {("zh-CN", "sms"), ("zh-CN", "loudspeaker"), ("zh-CN", "push"), ("en", "sms")} <= set(templates)
    sms = templates[("zh-CN", "sms")]
    assert sms["style"] == "sms" and {"sms", "sms_backup"} <= set(sms["channels"])
    path = Path(sms["file"])
    original = text_of(path)
    assert sms["source"] == original

    edited = "【请注意】" + original
    job = {"language": "zh-CN", "name": "sms", "source": edited}
    assert (await client.post("/api/v1/templates/preview", json=job, headers=as_role[VIEWER])).status == 403
    resp = await client.post("/api/v1/templates/preview", json=job, headers=as_role[OPERATOR])
    assert resp.status == 200, await resp.text()
    preview = await resp.json()
    assert [p["sample"] for p in preview["previews"]] == ["issue", "update", "upgrade", "cancel"]
    issue = preview["previews"][0]
    assert issue["body"].startswith(
        "【梁平区应急管理局】〔请注意〕"
    )  # signed; 【】 inside content become 〔〕
    assert "红色" in issue["body"] and issue["segments"] == 2 and issue["chars"] == len(issue["body"])
    assert "升级" in preview["previews"][2]["body"] and "解除" in preview["previews"][3]["body"]
    push = await client.post(
        "/api/v1/templates/preview",
        json={"language": "zh-CN", "name": "push", "source": templates[("zh-CN", "push")]["source"]},
    )
    assert (await push.json())["previews"][0]["title"]
    spoken = await client.post(
        "/api/v1/templates/preview",
        json={
            "language": "zh-CN",
            "name": "loudspeaker",
            "source": templates[("zh-CN", "loudspeaker")]["source"],
        },
    )
    assert spoken.status == 200 and not any(c.isdigit() for c in (await spoken.json())["previews"][0]["body"])
    assert text_of(path) == original  # a preview saves nothing

    # a sandbox escape, a probe in a branch no sample takes, a syntax error, a loop that never ends
    cases = {
        "{{ ''.__class__.__mro__ }}": ("sandbox", 1),
        "第一行\n{% if false %}{{ cycler.__init__.__globals__ }}{% endif %}": ("sandbox", 2),
        "一\n二\n{% if alert %}未闭合": ("syntax", 3),
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}": ("limit", None),
        "{{ 'x' * 1000000 }}": ("sandbox", 1),
    }
    for source, (kind, line) in cases.items():
        refused = await client.post(
            "/api/v1/templates/preview", json={"language": "zh-CN", "name": "sms", "source": source}
        )
        assert refused.status == 400, source
        answer = await refused.json()
        assert answer["errors"][0]["kind"] == kind, (source, answer)
        assert answer["errors"][0]["line"] == line, (source, answer)
        assert "模板有误" in answer["error"]
    refusals = await audit(app, "templates.refused")
    assert len(refusals) == 4 and all(r["target"] == "template:zh-CN/sms" for r in refusals)
    for bad in (
        {"language": "fr", "name": "sms", "source": "x"},
        {"language": "zh-CN", "name": "../../etc/passwd", "source": "x"},
    ):
        assert (await client.post("/api/v1/templates/preview", json=bad)).status == 404
    assert (
        await client.post("/api/v1/templates/preview", json={"language": "zh-CN", "name": "sms"})
    ).status == 400


async def test_a_saved_template_is_what_the_next_alert_says(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    listed = {
        (t["language"], t["name"]): t
        for t in (await (await client.get("/api/v1/templates")).json())["templates"]
    }
    sms = listed[("zh-CN", "sms")]
    path = Path(sms["file"])
    original = sms["source"]
    edited = "本地提醒：" + original
    job = {"source": edited, "sha256": sms["sha256"]}
    assert (
        await client.put("/api/v1/templates/zh-CN/sms", json=job, headers=as_role[OPERATOR])
    ).status == 403
    escape = await client.put(
        "/api/v1/templates/zh-CN/sms", json={"source": "{{ ''.__class__ }}", "sha256": sms["sha256"]}
    )
    assert escape.status == 400 and text_of(path) == original

    # the renderer has compiled the old one already
    [first] = await app.pipeline.ingest(cap_cn(), source="t")
    saved = await client.put("/api/v1/templates/zh-CN/sms", json=job, headers=as_role[ADMIN])
    assert saved.status == 200, await saved.text()
    answer = await saved.json()
    assert answer["saved"] and answer["previews"][0]["body"].startswith("【梁平区应急管理局】本地提醒：")
    assert text_of(path) == edited
    assert text_of(answer["backup"]) == original
    [entry] = await audit(app, "templates.save")
    assert entry["detail"]["previous"] == original and entry["detail"]["sha256"] == answer["sha256"]
    stale = await client.put("/api/v1/templates/zh-CN/sms", json=job)  # the sha256 of what was replaced
    assert stale.status == 409

    [second] = await app.pipeline.ingest(UPDATE, source="t")
    assert first.alert_id is not None and second.alert_id is not None
    old = await app.store.deliveries_page({"alert_id": first.alert_id, "channel": "sms"}, limit=5)
    new = await app.store.deliveries_page({"alert_id": second.alert_id, "channel": "sms"}, limit=5)
    assert old and new
    assert not any("本地提醒" in r["body"] for r in old)
    assert all(r["body"].startswith("【梁平区应急管理局】本地提醒：") for r in new)


def test_the_sandbox_worker_is_replaced_when_it_runs_too_long(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent's own limit (here shorter than the worker's alarm): the worker is killed, the next candidate
    starts a new one."""
    job = {
        "templates_dir": str(ROOT / "templates"),
        "default_language": "zh-CN",
        "timezone": "Asia/Shanghai",
        "language": "zh-CN",
        "file": "sms.j2",
        "kind": "warning",
        "style": "sms",
        "signature": "梁平区应急管理局",
        "max_chars": 500,
        "village": SAMPLE_VILLAGE,
    }
    sandbox = TemplateSandbox()
    try:
        ok = sandbox.run({**job, "source": "{{ alert.area_desc }}红色预警"})
        assert ok["errors"] == [] and ok["previews"][0]["body"] == "【梁平区应急管理局】万年村红色预警"
        first = sandbox._proc
        monkeypatch.setattr(template_sandbox, "ANSWER_SECONDS", 0.5)
        loop = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
        with pytest.raises(SandboxFailed):
            sandbox.run({**job, "source": loop})
        assert first is not None and first.poll() is not None  # killed
        monkeypatch.undo()
        again = sandbox.run({**job, "source": "好"})
        assert again["errors"] == [] and sandbox._proc is not first
    finally:
        sandbox.close()


# --- config sections --------------------------------------------------------------------------------------------


async def test_config_sections_are_checked_before_they_are_written(
    client: TestClient, app: App, as_role: dict[str, dict[str, str]]
) -> None:
    directory = app.config.directory
    rules_file = directory / "rules.yaml"
    got = await client.get("/api/v1/config/rules", headers=as_role[VIEWER])
    assert got.status == 200
    rules = await got.json()
    assert rules["file"] == str(rules_file) and rules["restart_pending"] is False
    assert [r["name"] for r in rules["value"]] == [r.name for r in app.config.rules]
    original = text_of(rules_file)

    broken = [dict(r) for r in rules["value"]]
    broken[0] = {**broken[0], "targets": [{**broken[0]["targets"][0], "channels": ["pigeon"]}]}
    refused = await client.put("/api/v1/config/rules", json={"value": broken, "sha256": rules["sha256"]})
    assert refused.status == 400
    answer = await refused.json()
    assert "pigeon" in answer["error"] and str(rules_file) in answer["error"]
    assert any(e["path"] == "rules[0].targets[0].channels[0]" for e in answer["errors"])
    assert text_of(rules_file) == original and not rules_file.with_suffix(".yaml.bak").exists()
    assert (await audit(app, "config.refused"))[0]["target"] == "config:rules"

    groups = await (await client.get("/api/v1/config/groups")).json()
    value = {**groups["value"], "volunteers": {"label": "志愿者", "roles": ["public"], "priority": 4}}
    assert (
        await client.put("/api/v1/config/groups", json={"value": value}, headers=as_role[OPERATOR])
    ).status == 403
    saved = await client.put(
        "/api/v1/config/groups", json={"value": value, "sha256": groups["sha256"]}, headers=as_role[ADMIN]
    )
    assert saved.status == 200, await saved.text()
    result = await saved.json()
    assert result["saved"] is True and result["restart_required"] is True
    assert text_of(result["backup"]).startswith("#")  # the old file, comments and all
    assert load_config(directory).groups["volunteers"].label == "志愿者"  # what warnd reads at its next start
    again = await (await client.get("/api/v1/config/groups")).json()
    assert again["restart_pending"] is True and "volunteers" in again["value"]
    assert "volunteers" not in app.config.groups  # the running daemon goes on with what it started with
    [entry] = await audit(app, "config.save")
    assert entry["target"] == "config:groups" and "volunteers" not in entry["detail"]["previous"]
    assert (
        await client.put("/api/v1/config/groups", json={"value": value, "sha256": groups["sha256"]})
    ).status == 409

    # terminals live in subscribers.yaml beside the people: those are kept
    terminals = await (await client.get("/api/v1/config/terminals")).json()
    assert terminals["file"] == str(directory / "subscribers.yaml")
    moved = [{**t, "name": t["name"] + "（新）"} for t in terminals["value"]]
    moving = {"value": moved, "sha256": terminals["sha256"]}
    assert (await client.put("/api/v1/config/terminals", json=moving)).status == 200
    reloaded = load_config(directory)
    assert [t.name for t in reloaded.terminals] == [t["name"] for t in moved]
    assert len(reloaded.subscribers) == len(app.config.subscribers)
    written = yaml.safe_load(text_of(directory / "subscribers.yaml"))
    assert set(written) >= {"subscribers", "terminals"}

    for section, bad, named in (
        ("rules", {"value": {}, "sha256": None}, "value"),
        ("groups", {"value": [], "sha256": None}, "value"),
        ("groups", {"groups": {}, "sha256": None}, "value"),
        ("groups", {"value": value}, "sha256"),  # an edit must say which version of the file it started from
    ):
        resp = await client.put(f"/api/v1/config/{section}", json=bad)
        assert resp.status == 400, (section, bad)
        assert (await resp.json())["error"].startswith(named), (section, bad)
    # channels hold credentials (as ${ENV} references): not editable here
    assert (await client.get("/api/v1/config/channels")).status == 404
