// 人员: the people warnd sends to (docs/admin.md). GET /api/v1/subscribers with filters (q, village, role, group,
// source, state) kept in the hash (#/subscribers?village=…), keyset pages (下一页 = ?after=<next_after>), phones
// masked as the server returns them. Operators add, edit and remove imported people (people from config are
// read-only: edited in the config files) and import a CSV file (all or nothing: the server's line-numbered
// problems are shown as a table); 导出CSV is a plain link (the browser downloads it with the session cookie).

import { api, explain, queryString } from "./api.js";
import { composerOptions, flatten } from "./areas.js";
import { field, fill, h, message, numeric, select, table } from "./dom.js";
import { when } from "./format.js";
import { keysetList } from "./widgets.js";

const PAGE_SIZE = 50;
const FILTERS = ["q", "village", "role", "group", "source", "state"];
const SOURCES = { config: "配置文件", import: "导入/添加" };
const STATES = [
  ["", "在册"],
  ["removed", "已删除"],
  ["all", "全部"],
];
const VULNERABLE = {
  elderly_alone: "独居老人",
  disabled: "残疾人",
  child: "儿童",
  bedridden: "卧床",
  pregnant: "孕妇",
};
const AREA_INDENT = "\u3000"; // an ideographic space per level of the tree
const CONFIG_REASON = "此人由配置文件（config/subscribers.yaml 或配置目录中的 CSV 文件）定义，这里只读：请修改配置文件后重启 warnd。";

function filtersOf(query) {
  return Object.fromEntries(FILTERS.filter((k) => query[k]).map((k) => [k, query[k]]));
}

function checkboxes(name, options, chosen) {
  return h(
    "div",
    { class: "checks" },
    options.map(([value, label]) =>
      h(
        "label",
        { class: "check" },
        h("input", { type: "checkbox", name, value, checked: chosen.includes(value) }),
        label,
      ),
    ),
  );
}

function checked(form, name) {
  return [...form.querySelectorAll(`input[name=${name}]:checked`)].map((el) => el.value);
}

/** The problems of a refused request ({line?, field?, message} or {file, path, reason}) as a table. */
function problemsTable(problems) {
  return table(
    ["行", "字段", "问题"],
    problems.map((p) =>
      h(
        "tr",
        null,
        h("td", { class: "num" }, p.line ?? "—"),
        h("td", { class: "nowrap" }, p.field || "—"),
        h("td", null, p.message),
      ),
    ),
    { class: "problems", id: "import-errors" },
  );
}

function rowButton(action, label, onclick) {
  return h("button", { type: "button", class: "quiet", dataset: { action }, onclick }, label);
}

export default {
  title: "人员",
  async render(main, route, ctx) {
    const filters = filtersOf(route.query);
    const mayEdit = ctx.can("operator");
    const options = await composerOptions();
    if (ctx.signal.aborted) return; // left while loading
    const areas = flatten(options ? options.areas : []);
    const groups = (options ? options.groups : []).map((g) => [g.name, g.label || g.name]);
    const roles = (options ? options.roles || [] : []).map((r) => [r.name, r.label || r.name]); // 身份, in Chinese
    const areaOptions = areas.map((a) => [a.code, AREA_INDENT.repeat(a.depth) + a.name]);

    // --- filters ---
    const q = h("input", { name: "q", value: filters.q || "", placeholder: "姓名或手机尾号", maxlength: 50 });
    const village = areas.length
      ? select("village", [["", "全部区域"], ...areaOptions], filters.village)
      : h("input", { name: "village", inputmode: "numeric", value: filters.village || "", placeholder: "区划代码" });
    const role = select("role", [["", "全部身份"], ...roles], filters.role);
    const group = select("group", [["", "全部分组"], ...groups], filters.group);
    const source = select("source", [["", "全部来源"], ...Object.entries(SOURCES)], filters.source);
    const state = select("state", STATES, filters.state);
    const form = h(
      "form",
      { class: "card filters", id: "subscriber-filters" },
      h(
        "div",
        { class: "filter-grid" },
        field("搜索", q),
        field("区域", village),
        field("身份", role),
        field("分组", group),
        field("来源", source),
        field("状态", state),
      ),
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "查询"),
        h("a", { class: "button quiet", href: "#/subscribers" }, "清除条件"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      ctx.go(
        `#/subscribers${queryString({
          q: q.value.trim(),
          village: village.value.trim(),
          role: role.value,
          group: group.value,
          source: source.value,
          state: state.value,
        })}`,
      );
    });

    const editor = h("div", { id: "subscriber-editor" });
    const importBox = mayEdit ? importCard() : null;
    const results = h("div", { id: "subscriber-results" }, h("p", { class: "loading" }, "正在查询…"));
    const head = h(
      "div",
      { class: "page-head" },
      h("h1", null, "人员"),
      mayEdit
        ? h(
            "div",
            { class: "row" },
            h(
              "button",
              { type: "button", class: "primary", id: "subscriber-add", onclick: () => edit(null) },
              "添加人员",
            ),
            h(
              "a",
              { class: "button", id: "subscribers-export", href: "/api/v1/subscribers/export.csv", download: "" },
              "导出CSV",
            ),
            h(
              "a",
              {
                class: "button quiet",
                href: `/api/v1/subscribers/export.csv${queryString({ source: "import" })}`,
                download: "",
              },
              "导出可再导入的CSV",
            ),
          )
        : null,
    );
    fill(
      main,
      h(
        "section",
        { class: "page subscribers-page" },
        head,
        mayEdit
          ? h(
              "p",
              { class: "hint" },
              "导入或添加的人员立即生效；配置文件中的人员只读。导出的 CSV 手机号已脱敏；“可再导入的CSV”只含导入/添加的人员。",
            )
          : null,
        editor,
        importBox,
        form,
        results,
      ),
    );

    // --- the add / edit form ---
    function edit(person) {
      const readOnly = !mayEdit || (person && !person.editable);
      const known = !person || roles.some(([r]) => r === person.role); // a role no group names still shows
      const roleOptions = known ? roles : [[person.role, person.role], ...roles];
      const value = (key) => (person && person[key] !== null && person[key] !== undefined ? String(person[key]) : "");
      const inputs = {
        name: h("input", { name: "name", value: value("name"), required: true, maxlength: 50 }),
        phone: h("input", { name: "phone", value: value("phone"), inputmode: "tel", required: true }),
        role: select("role", roleOptions, person ? person.role : "public"),
        area_code: areas.length
          ? select("area_code", [["", "请选择"], ...areaOptions], value("area_code"))
          : h("input", { name: "area_code", value: value("area_code"), inputmode: "numeric" }),
        language: h("input", { name: "language", value: value("language") || "zh-CN" }),
        address: h("input", { name: "address", value: value("address") }),
        household: h("input", { name: "household", value: value("household") }),
        superior: h("input", { name: "superior", value: value("superior"), inputmode: "tel" }),
        lat: h("input", { name: "lat", value: value("lat"), inputmode: "decimal" }),
        lon: h("input", { name: "lon", value: value("lon"), inputmode: "decimal" }),
      };
      const groupBoxes = checkboxes("groups", groups, person ? person.groups : []);
      const vulnerableBoxes = checkboxes("vulnerable", Object.entries(VULNERABLE), person ? person.vulnerable : []);
      const result = h("div", { class: "form-result", "aria-live": "polite" });
      const card = h(
        "form",
        { class: "card subscriber-form", id: "subscriber-form", novalidate: true },
        h("h2", null, person ? `${readOnly ? "查看" : "编辑"}：${person.name}（#${person.id}）` : "添加人员"),
        person && person.source === "config" ? message("info", CONFIG_REASON) : null,
        person && !person.active ? message("info", "此人已删除；如需恢复，请用同一手机号重新添加。") : null,
        h(
          "fieldset",
          { disabled: readOnly },
          h(
            "div",
            { class: "filter-grid" },
            field("姓名", inputs.name),
            field("手机号", inputs.phone, person ? "显示为脱敏号码；不修改则保持原号码" : null),
            field("身份", inputs.role),
            field("所在村（区划）", inputs.area_code),
            field("语言", inputs.language),
            field("住址", inputs.address),
            field("户号", inputs.household),
            field("上级手机号", inputs.superior),
            field("纬度", inputs.lat),
            field("经度", inputs.lon),
          ),
          h("div", { class: "field" }, h("span", { class: "label" }, "分组"), groupBoxes),
          h("div", { class: "field" }, h("span", { class: "label" }, "需优先照顾"), vulnerableBoxes),
        ),
        result,
        h(
          "div",
          { class: "row" },
          readOnly ? null : h("button", { type: "submit", class: "primary", id: "subscriber-save" }, "保存"),
          h("button", { type: "button", class: "quiet", onclick: () => fill(editor) }, readOnly ? "关闭" : "取消"),
        ),
      );
      card.addEventListener("submit", async (event) => {
        event.preventDefault();
        if (readOnly) return;
        const body = Object.fromEntries(Object.entries(inputs).map(([k, el]) => [k, el.value.trim()]));
        body.groups = checked(card, "groups");
        body.vulnerable = checked(card, "vulnerable");
        const save = card.querySelector("#subscriber-save");
        save.disabled = true;
        try {
          const { data } = person
            ? await api(`/api/v1/subscribers/${person.id}`, { method: "PUT", body, signal: ctx.signal })
            : await api("/api/v1/subscribers", { method: "POST", body, signal: ctx.signal });
          fill(editor, message("ok", `已保存：${data.name}（#${data.id}，${data.phone}），立即生效。`));
          list.reload();
        } catch (error) {
          if (error.name === "AbortError") return;
          const problems = error.data && Array.isArray(error.data.errors) ? error.data.errors : [];
          fill(
            result,
            message(
              "error",
              h("span", null, `保存失败：${explain(error)}`),
              problems.length > 1 ? h("ul", null, problems.map((p) => h("li", null, p.message))) : null,
            ),
          );
          save.disabled = false;
        }
      });
      fill(editor, card);
      card.scrollIntoView({ block: "start" });
      if (!readOnly) inputs.name.focus();
    }

    // --- remove, with a confirmation in the row ---
    function confirmRemove(person, cell) {
      const sure = h(
        "button",
        {
          type: "button",
          class: "danger",
          dataset: { action: "confirm-remove" },
          onclick: async () => {
            sure.disabled = true;
            try {
              await api(`/api/v1/subscribers/${person.id}`, { method: "DELETE", signal: ctx.signal });
              fill(editor, message("ok", `已删除：${person.name}（#${person.id}）。其发送记录保留；不再收到新的预警。`));
              list.reload();
            } catch (error) {
              if (error.name === "AbortError") return;
              fill(cell, message("error", `删除失败：${explain(error)}`));
            }
          },
        },
        "确认删除",
      );
      fill(
        cell,
        h(
          "div",
          { class: "confirm confirm-inline" },
          h("span", null, `删除 ${person.name}？`),
          sure,
          h("button", { type: "button", class: "quiet", onclick: () => list.reload() }, "取消"),
        ),
      );
    }

    function rowOf(person) {
      const actions = h("td", { class: "nowrap actions-cell" });
      if (person.editable && mayEdit) {
        actions.append(
          rowButton("edit", "编辑", () => edit(person)),
          " ",
          rowButton("remove", "删除", () => confirmRemove(person, actions)),
        );
      } else {
        actions.append(
          rowButton("view", "查看", () => edit(person)),
          person.source === "config"
            ? h("small", { class: "hint", title: CONFIG_REASON }, "配置文件定义，只读")
            : null,
        );
      }
      return h(
        "tr",
        { dataset: { subscriberId: person.id, source: person.source }, class: person.active ? null : "removed" },
        h("td", { class: "num" }, String(person.id)),
        h("td", { class: "nowrap" }, person.name),
        h("td", { class: "nowrap phone" }, person.phone || "—"),
        h("td", { class: "nowrap" }, person.role_label || person.role),
        h("td", { class: "nowrap" }, person.area_name || person.area_code),
        h("td", null, person.groups.join("、") || "—"),
        h("td", { class: "nowrap" }, SOURCES[person.source] || person.source, person.active ? "" : "（已删除）"),
        h("td", { class: "nowrap" }, when(person.updated_at)),
        actions,
      );
    }

    // --- the list, keyset pages ---
    const list = keysetList(results, {
      path: "/api/v1/subscribers",
      key: "subscribers",
      query: filters,
      pageSize: PAGE_SIZE,
      signal: ctx.signal,
      unit: "人",
      nextId: "subscribers-next",
      render: (rows) =>
        rows.length
          ? table(
              [numeric("编号"), "姓名", "手机", "身份", "区域", "分组", "来源", "更新时间", "操作"],
              rows.map(rowOf),
              { class: "subscriber-table", id: "subscriber-table" },
            )
          : h("p", { class: "card empty" }, "没有符合条件的人员。"),
    });

    // --- CSV import: the file as the body, all or nothing ---
    function importCard() {
      const file = h("input", { type: "file", name: "file", accept: ".csv,text/csv", id: "import-file" });
      const charset = select(
        "charset",
        [
          ["utf-8", "UTF-8（推荐）"],
          ["gb18030", "GBK / GB18030（Excel 另存的 CSV）"],
        ],
        "utf-8",
      );
      const outcome = h("div", { id: "import-result", "aria-live": "polite" });
      const send = h("button", { type: "submit", class: "primary", id: "import-submit" }, "导入");
      const card = h(
        "form",
        { class: "card", id: "import-form" },
        h("h2", null, "导入 CSV"),
        h(
          "p",
          { class: "hint" },
          "列：name,phone,role,area_code,lat,lon,language,groups,address,household,vulnerable,superior（首行为表头；",
          "name、phone、area_code 必填）。整个文件先检查，任何一行有误则不导入任何记录。按手机号新增或更新，不删除文件中没有的人。",
        ),
        h("div", { class: "row" }, field("文件", file), field("编码", charset), send),
        outcome,
      );
      card.addEventListener("submit", async (event) => {
        event.preventDefault();
        const chosen = file.files && file.files[0];
        if (!chosen) {
          fill(outcome, message("error", "请先选择 CSV 文件。"));
          return;
        }
        send.disabled = true;
        fill(outcome, h("p", { class: "loading" }, "正在检查并导入…"));
        try {
          const { data } = await api("/api/v1/subscribers/import", {
            method: "POST",
            body: chosen,
            contentType: `text/csv; charset=${charset.value}`,
            signal: ctx.signal,
          });
          fill(outcome, message("ok", `已导入 ${data.imported} 人（文件共 ${data.rows} 行），立即生效。`));
          file.value = "";
          list.reload();
        } catch (error) {
          if (error.name === "AbortError") return;
          const problems = error.data && Array.isArray(error.data.errors) ? error.data.errors : [];
          const more = error.data && error.data.more_errors;
          fill(
            outcome,
            message("error", `导入失败，未导入任何记录：${explain(error)}`),
            problems.length ? problemsTable(problems) : null,
            more ? h("p", { class: "hint" }, `另有 ${more} 处问题未列出。`) : null,
          );
        } finally {
          send.disabled = false;
        }
      });
      return card;
    }

    await list.load(0);
  },
};
