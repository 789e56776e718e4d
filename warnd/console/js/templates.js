// 模板: the message templates (templates/<language>/<name>.j2, docs/admin.md). GET /api/v1/templates lists them
// with their source and sha256; 预览 (operators) renders the edited text, unsaved, in the server's sandbox on a
// sample red rainstorm warning (POST /api/v1/templates/preview); 保存 (admins) PUTs it with the sha256 it was read
// with, so a file changed meanwhile is refused (409) rather than overwritten. The choice lives in the hash
// (#/templates?language=zh-CN&name=sms).

import { api, explain, queryString } from "./api.js";
import { field, fill, h, message, numeric, table } from "./dom.js";
import { STYLES } from "./format.js";
import { retryable } from "./widgets.js";

const ERROR_KINDS = { syntax: "语法错误", sandbox: "沙箱拒绝", runtime: "渲染出错", limit: "超出限制" };

function errorsTable(errors) {
  return table(
    [numeric("行"), "类型", "说明"],
    errors.map((e) =>
      h(
        "tr",
        { dataset: { kind: e.kind } },
        h("td", { class: "num" }, e.line ?? "—"),
        h("td", { class: "nowrap" }, ERROR_KINDS[e.kind] || e.kind || "—"),
        h("td", null, e.message),
      ),
    ),
    { class: "problems", id: "template-errors" },
  );
}

function previewCard(preview, style) {
  const text = h("p", { class: style === "sms" ? "bubble" : "script", dataset: { field: "body" } }, preview.body);
  return h(
    "div",
    { class: "channel-preview", dataset: { sample: preview.sample } },
    h(
      "div",
      { class: "cp-head" },
      h("b", null, preview.sample),
      h(
        "span",
        { class: "cp-meta" },
        "字数 ",
        h("b", { dataset: { field: "chars" } }, String(preview.chars)),
        preview.segments
          ? [" · 条数 ", h("b", { dataset: { field: "segments" } }, String(preview.segments))]
          : null,
      ),
      preview.truncated ? h("span", { class: "tag tag-below" }, "已截断") : null,
    ),
    preview.title
      ? [
          h("p", { class: "cp-label" }, "标题"),
          h("p", { class: "pv-headline", dataset: { field: "title" } }, preview.title),
        ]
      : null,
    text,
  );
}

export default {
  title: "模板",
  async render(main, route, ctx) {
    const mayPreview = ctx.can("operator");
    const maySave = ctx.can("admin");
    let data;
    try {
      data = (await api("/api/v1/templates", { signal: ctx.signal })).data;
    } catch (error) {
      if (error.name === "AbortError") return;
      const retry = retryable(`加载失败：${explain(error)}`, () => ctx.go(route.hash));
      fill(main, h("section", { class: "page" }, h("h1", null, "模板"), retry));
      return;
    }
    const languages = data.languages || [];
    const language = languages.includes(route.query.language)
      ? route.query.language
      : data.default_language || languages[0];
    const mine = data.templates.filter((t) => t.language === language);
    const template = mine.find((t) => t.name === route.query.name) || mine[0];
    if (!template) {
      fill(main, h("section", { class: "page" }, h("h1", null, "模板"), message("warn", "没有可编辑的模板。")));
      return;
    }
    let sha256 = template.sha256;
    let saved = template.source;

    const pickLanguage = h(
      "select",
      { name: "language", id: "template-language" },
      languages.map((l) => h("option", { value: l, selected: l === language }, l)),
    );
    const pickName = h(
      "select",
      { name: "name", id: "template-name" },
      mine.map((t) => h("option", { value: t.name, selected: t.name === template.name }, `${t.name}.j2`)),
    );
    const choose = () => ctx.go(`#/templates${queryString({ language: pickLanguage.value, name: pickName.value })}`);
    pickLanguage.addEventListener("change", () => {
      pickName.value = "";
      choose();
    });
    pickName.addEventListener("change", choose);

    const source = h("textarea", {
      id: "template-source",
      class: "code-editor",
      name: "source",
      rows: 16,
      spellcheck: "false",
      autocapitalize: "off",
      readonly: !mayPreview,
      value: template.source,
    });
    const state = h("span", { class: "tag", id: "template-state" }, "未修改");
    source.addEventListener("input", () => {
      state.textContent = source.value === saved ? "未修改" : "已修改，未保存";
    });
    const outcome = h("div", { id: "template-result", "aria-live": "polite" });
    const previews = h("div", { id: "template-previews" });
    const previewButton = h("button", { type: "button", class: "primary", id: "template-preview" }, "预览");
    const saveButton = h("button", { type: "button", id: "template-save" }, "保存");
    const reload = h("button", { type: "button", class: "quiet", onclick: () => ctx.go(route.hash) }, "重新载入");

    function refused(action, error) {
      const errors = error.data && Array.isArray(error.data.errors) ? error.data.errors : [];
      if (error.status === 409) {
        fill(
          outcome,
          message(
            "error",
            h("b", null, "未保存：文件在您读取之后已被修改（他人保存或手工修改）。"),
            h("p", null, explain(error)),
            h("p", null, "请先复制您的修改，点「重新载入」读取最新内容后再改。"),
          ),
        );
        return;
      }
      fill(outcome, message("error", `${action}失败：${explain(error)}`), errors.length ? errorsTable(errors) : null);
      fill(previews);
    }

    function show(answerPreviews) {
      fill(
        previews,
        h("h2", null, "样例预览"),
        h("p", { class: "hint" }, "样例：暴雨红色预警，按发布、更新、升级、解除分别渲染，按渠道实际发送的样子显示。"),
        answerPreviews.map((p) => previewCard(p, template.style)),
      );
    }

    previewButton.addEventListener("click", async () => {
      previewButton.disabled = true;
      fill(outcome, h("p", { class: "loading" }, "正在沙箱中渲染…"));
      try {
        const { data: answer } = await api("/api/v1/templates/preview", {
          method: "POST",
          body: { language, name: template.name, source: source.value },
          signal: ctx.signal,
        });
        const text = source.value === saved ? "当前模板渲染正常。" : "修改后的模板可以渲染（尚未保存）。";
        fill(outcome, message("ok", text));
        show(answer.previews || []);
      } catch (error) {
        if (error.name !== "AbortError") refused("预览", error);
      } finally {
        previewButton.disabled = false;
      }
    });

    saveButton.addEventListener("click", async () => {
      saveButton.disabled = true;
      fill(outcome, h("p", { class: "loading" }, "正在检查并保存…"));
      try {
        const path = `/api/v1/templates/${encodeURIComponent(language)}/${encodeURIComponent(template.name)}`;
        const { data: answer } = await api(path, {
          method: "PUT",
          body: { source: source.value, sha256 },
          signal: ctx.signal,
        });
        sha256 = answer.sha256;
        saved = source.value;
        state.textContent = "未修改";
        fill(
          outcome,
          message(
            "ok",
            h("b", null, "已保存，立即生效：下一条消息使用新模板。"),
            h("p", null, `文件 ${answer.file}${answer.backup ? `；原内容备份为 ${answer.backup}` : ""}`),
          ),
        );
        show(answer.previews || []);
      } catch (error) {
        if (error.name !== "AbortError") refused("保存", error);
      } finally {
        saveButton.disabled = false;
      }
    });

    fill(
      main,
      h(
        "section",
        { class: "page templates-page" },
        h("div", { class: "page-head" }, h("h1", null, "模板")),
        h(
          "div",
          { class: "card" },
          h("div", { class: "filter-grid" }, field("语言", pickLanguage), field("模板", pickName)),
          h(
            "dl",
            { class: "facts" },
            h("dt", null, "文件"),
            h("dd", null, template.file),
            h("dt", null, "样式"),
            h("dd", null, STYLES[template.style] || template.style || "—"),
            h("dt", null, "使用的渠道"),
            h("dd", null, template.channels.join("、") || "—"),
          ),
        ),
        h(
          "div",
          { class: "two-col template-grid" },
          h(
            "div",
            { class: "card" },
            h("div", { class: "cp-head" }, h("h2", null, "编辑"), state),
            field("模板内容（Jinja2，变量见 templates/README.md）", source),
            mayPreview
              ? h("div", { class: "row" }, previewButton, maySave ? saveButton : null, reload)
              : message("info", "查看员只能阅读模板；值班员可预览，管理员可保存。"),
            mayPreview && !maySave ? h("p", { class: "hint" }, "只有管理员可以保存模板；您可以预览修改的效果。") : null,
            outcome,
          ),
          h("div", { class: "card" }, previews),
        ),
      ),
    );
    if (mayPreview) previewButton.click(); // the current text, rendered
    else fill(previews, h("p", { class: "muted" }, "预览需要值班员或更高角色。"));
  },
};
