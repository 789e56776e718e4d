// 配置: the groups, loudspeaker terminals and rules (docs/admin.md). GET /api/v1/config/{section} is shown as a
// table; admins edit the section as JSON and 校验并保存 PUTs it with the sha256 it was read with. The server
// loads the whole configuration with the new section first (as `warnd check-config`) and answers every problem
// as {file, path, reason}; a saved section takes effect when warnd is restarted (restart_required).

import { api, explain } from "./api.js";
import { field, fill, h, message, table } from "./dom.js";
import { retryable } from "./widgets.js";

const SECTIONS = {
  groups: { label: "群组", what: "谁属于哪个群组（身份和成员）、是否参加演练、发送优先级" },
  terminals: { label: "大喇叭终端", what: "各村的应急广播终端" },
  rules: { label: "响应规则", what: "哪种预警按哪一级响应，发给哪些群组、用哪些渠道" },
};

// column titles for the keys the sections have (docs/configuration.md); other keys are shown as they are named
const COLUMNS = {
  name: "名称",
  label: "显示名",
  roles: "身份",
  members: "成员",
  drill: "参加演练",
  priority: "优先级",
  id: "编号",
  area_code: "区划代码",
  hazards: "灾种",
  colours: "颜色",
  statuses: "状态",
  msg_types: "消息类型",
  areas: "区域",
  level: "响应级别",
  targets: "发送对象 → 渠道",
  escalation: "升级",
};

/** A cell value as text: lists joined with 、, a rule's target as "groups → channels (more)", objects as
 * "key: value" pairs. */
function cellText(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) {
    return value.every((v) => typeof v !== "object" || v === null)
      ? value.join("、")
      : value.map((v) => cellText(v)).join("\n");
  }
  if (typeof value === "object") {
    const { groups, channels, ...rest } = value;
    const more = Object.entries(rest).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
    if (Array.isArray(groups) && Array.isArray(channels)) {
      return `${groups.join("、")} → ${channels.join("、")}${more.length ? `（${more.join("; ")}）` : ""}`;
    }
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
      .join("; ");
  }
  if (typeof value === "boolean") return value ? "是" : "否";
  return String(value);
}

/** The section as a table: one row per group / terminal / rule, a column per key any of them has. */
function sectionTable(value) {
  const items = Array.isArray(value) // terminals and rules are lists, groups an object: name → settings
    ? value.map((item) => (item && typeof item === "object" ? item : { value: item }))
    : Object.entries(value || {}).map(([name, item]) => ({ name, ...(item || {}) }));
  if (!items.length) return h("p", { class: "card empty" }, "此配置段为空。");
  const columns = [];
  for (const item of items) for (const key of Object.keys(item)) if (!columns.includes(key)) columns.push(key);
  return table(
    columns.map((key) => COLUMNS[key] || key),
    items.map((item) => h("tr", null, columns.map((key) => h("td", { class: "cfg-cell" }, cellText(item[key]))))),
    { class: "config-table", id: "config-table" },
  );
}

function problemsTable(errors) {
  return table(
    ["文件", "位置", "原因"],
    errors.map((e) =>
      h(
        "tr",
        null,
        h("td", { class: "nowrap" }, e.file || "—"),
        h("td", { class: "nowrap" }, e.path || "—"),
        h("td", null, e.reason || e.message || ""),
      ),
    ),
    { class: "problems", id: "config-errors" },
  );
}

export default {
  title: "配置",
  async render(main, route, ctx) {
    const section = route.params[0] in SECTIONS ? route.params[0] : "groups";
    const mayEdit = ctx.can("admin");
    const tabs = h(
      "nav",
      { class: "segmented", "aria-label": "配置段" },
      Object.entries(SECTIONS).map(([name, s]) =>
        h(
          "a",
          {
            class: ["button", name === section ? "active" : null],
            href: `#/config/${name}`,
            "aria-current": name === section ? "page" : null,
          },
          s.label,
        ),
      ),
    );
    const head = h("div", { class: "page-head" }, h("h1", null, "配置"), tabs);
    let data;
    try {
      data = (await api(`/api/v1/config/${section}`, { signal: ctx.signal })).data;
    } catch (error) {
      if (error.name === "AbortError") return;
      fill(main, h("section", { class: "page" }, head, retryable(`加载失败：${explain(error)}`, () => ctx.go(route.hash))));
      return;
    }
    let sha256 = data.sha256;
    const pending = h(
      "div",
      { id: "restart-pending", hidden: !data.restart_pending },
      message("warn", "文件中的内容与正在运行的配置不同：已保存的修改要在重启 warnd 后才生效。"),
    );

    let editor = null;
    if (mayEdit) {
      const text = h("textarea", {
        id: "config-json",
        class: "code-editor",
        rows: 18,
        spellcheck: "false",
        autocapitalize: "off",
        value: JSON.stringify(data.value, null, 2),
      });
      const outcome = h("div", { id: "config-result", "aria-live": "polite" });
      const save = h("button", { type: "button", class: "primary", id: "config-save" }, "校验并保存");
      save.addEventListener("click", async () => {
        let value;
        try {
          value = JSON.parse(text.value);
        } catch (error) {
          fill(outcome, message("error", `JSON 格式有误，未保存：${error.message}`));
          return;
        }
        save.disabled = true;
        fill(outcome, h("p", { class: "loading" }, "正在用整套配置校验…"));
        try {
          const { data: answer } = await api(`/api/v1/config/${section}`, {
            method: "PUT",
            body: { value, sha256 },
            signal: ctx.signal,
          });
          sha256 = answer.sha256;
          pending.hidden = !answer.restart_required;
          fill(
            outcome,
            message(
              "ok",
              h("b", null, answer.restart_required ? "已保存，重启 warnd 后生效。" : "已保存。"),
              h("p", null, `文件 ${answer.file}${answer.backup ? `；原文件备份为 ${answer.backup}` : ""}。`),
              h("p", null, "注意：文件中的注释和 YAML 锚点不会保留（备份文件中仍有）。"),
            ),
          );
        } catch (error) {
          if (error.name === "AbortError") return;
          const errors = error.data && Array.isArray(error.data.errors) ? error.data.errors : [];
          fill(
            outcome,
            error.status === 409
              ? message(
                  "error",
                  h("b", null, "未保存：文件在您读取之后已被修改。"),
                  h("p", null, explain(error)),
                  h("p", null, "请先复制您的修改，重新载入本页后再改。"),
                )
              : message("error", `校验未通过，未保存：${explain(error)}`),
            errors.length ? problemsTable(errors) : null,
          );
        } finally {
          save.disabled = false;
        }
      });
      editor = h(
        "div",
        { class: "card" },
        h("h2", null, "编辑（JSON）"),
        h(
          "p",
          { class: "hint" },
          `整个“${SECTIONS[section].label}”配置段。保存前服务器会用全部配置一起校验（与 warnd check-config 相同）；`,
          "任何错误都不会写入文件。",
        ),
        field("配置段内容", text),
        h(
          "div",
          { class: "row" },
          save,
          h("button", { type: "button", class: "quiet", onclick: () => ctx.go(route.hash) }, "重新载入"),
        ),
        outcome,
      );
    }

    fill(
      main,
      h(
        "section",
        { class: "page config-page" },
        head,
        pending,
        h(
          "div",
          { class: "card" },
          h("h2", null, SECTIONS[section].label),
          h("p", { class: "hint" }, `${SECTIONS[section].what}。文件：${data.file}`),
          sectionTable(data.value),
        ),
        editor || message("info", "只有管理员可以修改配置；修改保存后须重启 warnd 才生效。"),
      ),
    );
  },
};
