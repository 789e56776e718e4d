// 发布广播: the operator picks areas (township/village tree) and/or groups, channels, hazard + colour or free
// text, status; a live per-channel preview (POST /api/v1/broadcasts/preview, debounced while typing) shows
// exactly what goes out — SMS text with its signature, 字数 and 条数, the loudspeaker script, the push
// notification — and how many it reaches per channel, and whether a second person must approve it.

import { api, explain } from "./api.js";
import { debounce, field, fill, h, message } from "./dom.js";
import { CAP_STATUS, COLOUR_LABELS, number, STYLES } from "./format.js";

const PREVIEW_DELAY = 400; // ms after the last keystroke
const AREA_KINDS = { county: "区县", township: "乡镇", village: "村/社区" };
const EXPIRY_HOURS = [1, 3, 6, 12, 24, 48];
const COLLAPSE_ABOVE = 40; // villages: with more, townships start folded

function villageCount(node) {
  const kids = node.children || [];
  return kids.length ? kids.reduce((sum, k) => sum + villageCount(k), 0) : node.kind === "village" ? 1 : 0;
}

/** The township/village tree with checkboxes. A ticked node stands for everything under it. */
function areaTree(roots) {
  const entries = new Map();
  const total = roots.reduce((sum, r) => sum + villageCount(r), 0);

  function setDown(code, checked) {
    const entry = entries.get(code);
    entry.input.checked = checked;
    entry.input.indeterminate = false;
    for (const child of entry.children) setDown(child, checked);
  }

  function setUp(code) {
    if (!code) return;
    const entry = entries.get(code);
    const kids = entry.children.map((c) => entries.get(c).input);
    const all = kids.every((k) => k.checked);
    entry.input.checked = all;
    entry.input.indeterminate = !all && kids.some((k) => k.checked || k.indeterminate);
    setUp(entry.parent);
  }

  function build(node, parent, depth) {
    const input = h("input", { type: "checkbox", value: node.code, dataset: { code: node.code } });
    const kids = node.children || [];
    const entry = { node, input, parent, children: kids.map((k) => k.code) };
    entries.set(node.code, entry);
    input.addEventListener("change", () => {
      // before the form's own "change" listener (bubbling) reads the draft
      setDown(node.code, input.checked);
      setUp(parent);
    });
    const label = h(
      "label",
      { class: "check" },
      input,
      h("span", null, node.name || node.code),
      h("small", { class: "muted" }, AREA_KINDS[node.kind] || ""),
    );
    if (!kids.length) return h("li", { class: `tree-${node.kind}` }, h("div", { class: "tree-row" }, label));
    const folded = depth >= 1 && total > COLLAPSE_ABOVE;
    const list = h(
      "ul",
      { hidden: folded },
      kids.map((k) => build(k, node.code, depth + 1)),
    );
    const toggle = h(
      "button",
      {
        type: "button",
        class: "tree-toggle",
        "aria-expanded": String(!folded),
        "aria-label": `展开或收起${node.name}`,
      },
      folded ? "▸" : "▾",
    );
    toggle.addEventListener("click", () => {
      list.hidden = !list.hidden;
      toggle.textContent = list.hidden ? "▸" : "▾";
      toggle.setAttribute("aria-expanded", String(!list.hidden));
    });
    return h(
      "li",
      { class: `tree-${node.kind}` },
      h("div", { class: "tree-row" }, toggle, label, h("small", { class: "muted" }, `${villageCount(node)} 个村`)),
      list,
    );
  }

  const element = h(
    "ul",
    { class: "tree", id: "area-tree" },
    roots.map((r) => build(r, null, 0)),
  );

  function selected(nodes = roots) {
    const out = [];
    for (const node of nodes) {
      const entry = entries.get(node.code);
      if (entry.input.checked) out.push(node.code);
      else if (node.children && node.children.length) out.push(...selected(node.children));
    }
    return out;
  }

  return { element, selected };
}

function checkboxes(name, items, labelOf) {
  return h(
    "div",
    { class: "checks", role: "group" },
    items.map((item) =>
      h(
        "label",
        { class: "check" },
        h("input", {
          type: "checkbox",
          name,
          value: item.name || item.code,
          dataset: { [name]: item.name || item.code },
        }),
        labelOf(item),
      ),
    ),
  );
}

function ticked(box) {
  return [...box.querySelectorAll("input:checked")].map((i) => i.value);
}

function channelPreview(c) {
  const meta = (...parts) => h("p", { class: "cp-meta" }, ...parts);
  let body;
  if (c.style === "sms") {
    body = [
      h("p", { class: "bubble", dataset: { field: "body" } }, c.body),
      meta(
        "字数 ",
        h("b", { dataset: { field: "chars" } }, String(c.chars)),
        " · 条数 ",
        h("b", { dataset: { field: "segments" } }, String(c.segments)),
        c.segments > 1 ? "（超过 70 字按每条 67 字计）" : "",
      ),
    ];
  } else if (c.style === "spoken") {
    body = [
      h("p", { class: "cp-label" }, "广播稿（由大喇叭朗读）"),
      h("p", { class: "script", dataset: { field: "body" } }, c.body),
      meta("字数 ", h("b", { dataset: { field: "chars" } }, String(c.chars))),
    ];
  } else if (c.style === "push") {
    body = [
      h(
        "div",
        { class: "push-card" },
        h("b", { dataset: { field: "title" } }, c.title || "（无标题）"),
        h("p", { dataset: { field: "body" } }, c.body),
      ),
    ];
  } else {
    body = [h("p", { class: "script", dataset: { field: "body" } }, c.body)];
  }
  return h(
    "section",
    { class: `channel-preview cp-${c.style || "other"}`, dataset: { channel: c.channel } },
    h(
      "div",
      { class: "cp-head" },
      h("b", null, c.channel),
      h("span", { class: "tag" }, STYLES[c.style] || c.style || "其他"),
      h(
        "span",
        { class: "cp-recipients" },
        "接收 ",
        h("b", { dataset: { field: "recipients" } }, number(c.recipients)),
      ),
    ),
    body,
  );
}

function approvalNotice(preview) {
  if (!preview.needs_approval) return message("ok", "无需审批：确认后立即发送。");
  return h(
    "div",
    { class: "msg msg-approval", role: "status", id: "approval-notice" },
    h("b", null, "需要第二人审批"),
    preview.approval_reasons && preview.approval_reasons.length
      ? h(
          "ul",
          null,
          preview.approval_reasons.map((r) => h("li", null, r)),
        )
      : null,
    h("p", null, "提交后由另一位审批人在“待审批”页面批准才会发出；提交人本人不能审批。"),
  );
}

export default {
  title: "发布广播",
  minRole: "operator",
  async render(main, route, ctx) {
    const { data: options } = await api("/api/v1/composer", { signal: ctx.signal });
    const schedule = debounce(() => refresh(), PREVIEW_DELAY);
    const tree = areaTree(options.areas || []);
    const groups = checkboxes("group", options.groups || [], (g) => g.label || g.name);
    const channels = checkboxes("channel", options.channels || [], (c) => [
      c.name,
      " ",
      h("small", { class: "muted" }, STYLES[c.style] || c.adapter || ""),
    ]);
    const hazard = h(
      "select",
      { name: "hazard" },
      h("option", { value: "" }, "（不指定灾种）"),
      (options.hazards || []).map((z) => h("option", { value: z.code }, z.name)),
    );
    hazard.id = "hazard";
    const colours = h(
      "div",
      { class: "colour-pick", role: "radiogroup", "aria-label": "预警颜色" },
      h(
        "label",
        { class: "swatch c-none" },
        h("input", { type: "radio", name: "colour", value: "", checked: true }),
        "不指定",
      ),
      (options.colours || []).map((c) =>
        h(
          "label",
          { class: `swatch c-${c.code}` },
          h("input", { type: "radio", name: "colour", value: c.code }),
          c.label || COLOUR_LABELS[c.code],
        ),
      ),
    );
    const headline = h("input", { name: "headline", maxlength: 200, placeholder: "留空则按灾种和颜色自动生成" });
    headline.id = "headline";
    const text = h("textarea", {
      name: "text",
      rows: 4,
      maxlength: 2000,
      placeholder: "选择灾种和颜色时可留空，按模板生成；也可只写自由文本",
    });
    text.id = "text";
    const statuses = h(
      "div",
      { class: "checks", role: "radiogroup", "aria-label": "信息状态" },
      (options.statuses || []).map((st, i) =>
        h(
          "label",
          { class: `check status-${st.code}` },
          h("input", {
            type: "radio",
            name: "status",
            value: st.code,
            checked: st.code === "Actual" || (i === 0 && !options.statuses.some((x) => x.code === "Actual")),
          }),
          st.label || CAP_STATUS[st.code] || st.code,
        ),
      ),
    );
    const expires = h(
      "select",
      { name: "expires" },
      EXPIRY_HOURS.map((n) => h("option", { value: n * 3600, selected: n === 6 }, `${n} 小时`)),
    );
    expires.id = "expires";

    const preview = h(
      "div",
      { class: "preview-body", id: "preview", "aria-live": "polite" },
      h("p", { class: "muted" }, "选择区域或群组、渠道和内容后，这里显示每个渠道实际发出的内容。"),
    );
    const previewState = h("span", { class: "muted", id: "preview-state" });
    const result = h("div", { id: "compose-result" });
    const submit = h(
      "button",
      { type: "button", class: "primary wide", id: "compose-submit", disabled: true },
      "请先完成填写",
    );
    const confirmBox = h("div", { class: "confirm", id: "compose-confirm", hidden: true });

    const form = h(
      "form",
      { class: "compose-form", id: "compose-form", novalidate: true },
      h("fieldset", null, h("legend", null, "1. 发送范围：区域"), tree.element),
      h(
        "fieldset",
        null,
        h("legend", null, "群组（可与区域同时选择）"),
        groups,
        h("small", { class: "hint" }, "只选群组不选区域：发给全区该群组；两者都选：只发给所选区域内的这些群组。"),
      ),
      h("fieldset", null, h("legend", null, "2. 渠道"), channels),
      h(
        "fieldset",
        null,
        h("legend", null, "3. 内容"),
        field("灾种", hazard),
        h("div", { class: "field" }, h("span", { class: "label" }, "颜色"), colours),
        field("标题", headline),
        field("正文", text),
      ),
      h("fieldset", null, h("legend", null, "4. 状态与时效"), statuses, field("有效时长", expires)),
    );
    form.addEventListener("submit", (event) => event.preventDefault());
    form.addEventListener("input", () => changed());
    form.addEventListener("change", () => changed());

    fill(
      main,
      h(
        "section",
        { class: "page compose-page" },
        h("h1", null, "发布广播"),
        result,
        h(
          "div",
          { class: "compose-grid" },
          form,
          h(
            "aside",
            { class: "card preview", "aria-label": "发送预览" },
            h("div", { class: "page-head" }, h("h2", null, "发送预览"), previewState),
            preview,
            confirmBox,
            submit,
          ),
        ),
      ),
    );

    let seq = 0;
    let current = null; // {draft, answer} of the last good preview
    let sentKey = null;

    function draft() {
      const d = { areas: tree.selected(), groups: ticked(groups), channels: ticked(channels) };
      const status = form.querySelector("input[name=status]:checked");
      const colour = form.querySelector("input[name=colour]:checked");
      if (status) d.status = status.value;
      if (hazard.value) d.hazard = hazard.value;
      if (colour && colour.value) d.colour = colour.value;
      if (headline.value.trim()) d.headline = headline.value.trim();
      if (text.value.trim()) d.text = text.value.trim();
      d.expires_in = Number(expires.value);
      return d;
    }

    function missing(d) {
      if (!d.areas.length && !d.groups.length) return "请选择发送区域或群组。";
      if (!d.channels.length) return "请选择至少一个渠道。";
      if (!d.text && !d.hazard) return "请选择灾种（和颜色），或填写正文。";
      return null;
    }

    let lastKey = null; // the draft last previewed: "change" after "input", or a blur, is no change

    function changed() {
      const key = JSON.stringify(draft());
      if (key === lastKey) return;
      lastKey = key;
      current = null;
      confirmBox.hidden = true;
      submit.disabled = true;
      submit.hidden = false;
      const problem = missing(draft());
      if (problem) {
        schedule.cancel();
        seq += 1;
        previewState.textContent = "";
        fill(preview, h("p", { class: "muted" }, problem));
        submit.textContent = "请先完成填写";
        return;
      }
      previewState.textContent = "正在更新预览…";
      schedule();
    }

    async function refresh() {
      const d = draft();
      if (missing(d)) return;
      const mine = ++seq;
      try {
        const { data } = await api("/api/v1/broadcasts/preview", { method: "POST", body: d, signal: ctx.signal });
        if (mine !== seq) return;
        current = { draft: d, answer: data };
        previewState.textContent = "";
        fill(
          preview,
          approvalNotice(data),
          h("p", { class: "pv-headline", id: "preview-headline" }, data.headline || ""),
          h(
            "p",
            { class: "pv-total" },
            "预计接收：",
            h("b", { id: "preview-total", dataset: { field: "total" } }, number(data.recipients)),
            " 个（人或终端）",
          ),
          d.status && d.status !== "Actual"
            ? message(
                "warn",
                `这是${CAP_STATUS[d.status] || d.status}消息，内容会标注【${CAP_STATUS[d.status] || d.status}】。`,
              )
            : null,
          (data.channels || []).map(channelPreview),
        );
        const key = JSON.stringify(d);
        submit.disabled = key === sentKey || !data.recipients;
        submit.textContent =
          key === sentKey
            ? "已提交"
            : !data.recipients
              ? "没有接收对象"
              : data.needs_approval
                ? "提交审批…"
                : "立即发送…";
      } catch (error) {
        if (error.name === "AbortError" || mine !== seq) return;
        previewState.textContent = "";
        fill(preview, message("error", `预览失败：${explain(error)}`));
        submit.textContent = "请先修正";
      }
    }

    submit.addEventListener("click", () => {
      if (!current) return;
      const { answer } = current;
      submit.hidden = true;
      confirmBox.hidden = false;
      fill(
        confirmBox,
        h(
          "p",
          null,
          answer.needs_approval ? "提交审批：" : "立即发送：",
          h("b", null, `「${answer.headline || "（无标题）"}」`),
          `，共 ${number(answer.recipients)} 个接收对象。`,
        ),
        h(
          "div",
          { class: "row" },
          h(
            "button",
            {
              type: "button",
              class: answer.needs_approval ? "primary" : "danger",
              id: "compose-confirm-send",
              onclick: send,
            },
            answer.needs_approval ? "确认提交审批" : "确认发送",
          ),
          h(
            "button",
            {
              type: "button",
              class: "quiet",
              onclick: () => {
                confirmBox.hidden = true;
                submit.hidden = false;
              },
            },
            "返回修改",
          ),
        ),
      );
    });

    async function send() {
      if (!current) return;
      const { draft: d } = current;
      for (const button of confirmBox.querySelectorAll("button")) button.disabled = true;
      try {
        const { data } = await api("/api/v1/broadcasts", { method: "POST", body: d });
        sentKey = JSON.stringify(d);
        const broadcast = data.broadcast;
        if (broadcast && broadcast.status === "pending") {
          fill(
            result,
            message(
              "warn",
              h("b", null, `已提交审批（广播 #${broadcast.id}）。`),
              "请另一位审批人在“待审批”页面批准后才会发出。",
              " ",
              h("a", { href: "#/approvals" }, "查看待审批"),
            ),
          );
        } else {
          const alertId = data.id || (broadcast && broadcast.alert_id);
          fill(
            result,
            message(
              "ok",
              h("b", null, "已发送。"),
              alertId
                ? [
                    " ",
                    h("a", { href: `#/alerts/${alertId}` }, `查看预警 #${alertId}`),
                    " · ",
                    h("a", { href: "#/board" }, "在值班看板看进度"),
                  ]
                : null,
            ),
          );
        }
        confirmBox.hidden = true;
        submit.hidden = false;
        submit.disabled = true;
        submit.textContent = "已提交";
      } catch (error) {
        fill(result, message("error", `提交失败：${explain(error)}`));
        lastKey = null;
        changed();
      }
      result.scrollIntoView({ block: "nearest" });
    }
  },
};
