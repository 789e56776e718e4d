// 预警详情 #/alerts/{id}: the alert, its revisions, its timeline (GET /api/v1/alerts/{id}/timeline) and its
// deliveries by channel and status; 更新 / 解除 for operators (POST …/update, …/cancel; either may need a
// second person's approval, then the answer is a pending broadcast).

import { api, explain } from "./api.js";
import { field, fill, h, message, numeric, table } from "./dom.js";
import { ALERT_STATES, can, CAP_STATUS, COLOUR_LABELS, COLOURS, DELIVERY_STATUS, MSG_TYPES, when } from "./format.js";
import { colourTag, deliveryBadge, retryable } from "./widgets.js";

const TIMELINE_KINDS = {
  received: "接收",
  validated: "校验",
  matched: "规则匹配",
  revision: "修订",
  deliveries: "发送",
  escalation: "升级",
  ack: "叫应",
  doorknock: "敲门",
  broadcast: "广播",
  action: "操作",
};

/** A timeline event's detail: a sentence as it is; anything structured folded away as "key: value" lines. */
function detailOf(detail) {
  if (detail === null || detail === undefined || detail === "") return null;
  if (typeof detail !== "object") return h("p", { class: "muted" }, String(detail));
  const lines = Object.entries(detail)
    .filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
  return lines.length
    ? h("details", { class: "tl-detail" }, h("summary", null, "详情"), h("p", { class: "script" }, lines.join("\n")))
    : null;
}

function facts(alert) {
  const rows = [
    ["事件", alert.event],
    ["颜色/级别", [COLOUR_LABELS[alert.colour], alert.level_label].filter(Boolean).join(" ")],
    [
      "状态",
      [ALERT_STATES[alert.state] || alert.state, CAP_STATUS[alert.status] || alert.status].filter(Boolean).join(" · "),
    ],
    ["类型", MSG_TYPES[alert.msg_type] || alert.msg_type],
    ["区域", alert.area_desc],
    ["生效", when(alert.effective, { full: true })],
    ["失效", when(alert.expires, { full: true })],
    ["发布单位", alert.sender],
    ["接收时间", when(alert.received_at, { full: true })],
    ["来源", alert.source],
    ["匹配规则", (alert.rules || []).join("、") || "—"],
    ["标识", alert.identifier],
  ];
  return h(
    "dl",
    { class: "facts" },
    rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v || "—")]),
  );
}

function deliveryMatrix(byChannel, alertId) {
  const channels = Object.keys(byChannel || {}).sort();
  if (!channels.length) return h("p", { class: "muted" }, "尚无发送记录。");
  const statuses = Object.keys(DELIVERY_STATUS).filter((s) => channels.some((c) => byChannel[c][s]));
  const rows = channels.map((c) =>
    h(
      "tr",
      { dataset: { channel: c } },
      h("th", { scope: "row" }, c),
      statuses.map((s) =>
        h(
          "td",
          { class: "num" },
          byChannel[c][s]
            ? h(
                "a",
                { href: `#/log?alert=${alertId}&channel=${encodeURIComponent(c)}&status=${s}` },
                String(byChannel[c][s]),
              )
            : "0",
        ),
      ),
      h("td", { class: "num" }, String(statuses.reduce((sum, s) => sum + (byChannel[c][s] || 0), 0))),
    ),
  );
  return table(["渠道", ...statuses.map((s) => numeric(deliveryBadge(s))), numeric("合计")], rows, { class: "matrix" });
}

function timelineList(events) {
  if (!events.length) return h("p", { class: "muted" }, "暂无事件。");
  return h(
    "ol",
    { class: "timeline" },
    events.map((e) =>
      h(
        "li",
        { class: `tl-${e.kind}` },
        h("time", { datetime: e.at }, when(e.at, { full: true }).slice(5)),
        h("span", { class: "tag" }, TIMELINE_KINDS[e.kind] || e.kind),
        h("div", { class: "tl-body" }, h("b", null, e.title || e.kind), detailOf(e.detail)),
      ),
    ),
  );
}

function actions(alert, ctx) {
  const result = h("div", { class: "action-result" });
  const headline = h("input", { name: "headline", value: alert.headline || "" });
  const text = h("textarea", { name: "text", rows: 3, placeholder: "留空则沿用原内容" });
  const colour = h(
    "select",
    { name: "colour" },
    h("option", { value: "" }, "不变"),
    COLOURS.map((c) => h("option", { value: c }, `${COLOUR_LABELS[c]}（${c}）`)),
  );
  const hours = h("input", { type: "number", name: "expires_in", min: 1, max: 72, step: 1, placeholder: "不变" });
  const update = h(
    "form",
    { class: "stack", novalidate: true },
    h("h3", null, "更新预警"),
    field("标题", headline),
    field("正文", text),
    h("div", { class: "row" }, field("颜色（升级/降级）", colour), field("有效时长（小时）", hours)),
    h("button", { type: "submit", class: "primary" }, "发布更新"),
  );
  update.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {};
    if (headline.value.trim() && headline.value.trim() !== alert.headline) body.headline = headline.value.trim();
    if (text.value.trim()) body.text = text.value.trim();
    if (colour.value) body.colour = colour.value;
    if (hours.value) body.expires_in = Math.round(Number(hours.value) * 3600);
    if (!Object.keys(body).length) {
      fill(result, message("warn", "没有修改任何内容。"));
      return;
    }
    await send(`/api/v1/alerts/${alert.id}/update`, body, "更新已发布。", update);
  });

  const reason = h("textarea", { name: "reason", rows: 2, required: true, placeholder: "例如：雨势减弱，风险解除" });
  const confirm = h(
    "label",
    { class: "check" },
    h("input", { type: "checkbox", name: "confirm" }),
    "我确认解除此预警，并通知所有已接收的人",
  );
  const cancel = h(
    "form",
    { class: "stack danger-zone", novalidate: true },
    h("h3", null, "解除预警"),
    field("解除原因（必填）", reason),
    confirm,
    h("button", { type: "submit", class: "danger" }, "解除预警"),
  );
  cancel.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!reason.value.trim()) {
      fill(result, message("error", "请填写解除原因。"));
      return;
    }
    if (!confirm.querySelector("input").checked) {
      fill(result, message("error", "请勾选确认后再解除。"));
      return;
    }
    await send(
      `/api/v1/alerts/${alert.id}/cancel`,
      { reason: reason.value.trim() },
      "已解除，解除通知正在发送。",
      cancel,
    );
  });

  async function send(path, body, done, form) {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    fill(result, h("p", { class: "loading" }, "正在提交…"));
    try {
      const { data } = await api(path, { method: "POST", body });
      if (data && data.broadcast && data.broadcast.status === "pending") {
        fill(
          result,
          message(
            "warn",
            `已提交（广播 #${data.broadcast.id}），需要第二人审批后才会发出。`,
            " ",
            h("a", { href: "#/approvals" }, "查看待审批"),
          ),
        );
        ctx.refreshPending();
        return;
      }
      // sent: the new revision is the alert now
      const next = (data && (data.id || (data.broadcast && data.broadcast.alert_id))) || alert.id;
      ctx.notice("ok", `${done}（预警 #${next}）`);
      ctx.go(`#/alerts/${next}`);
    } catch (error) {
      fill(result, message("error", `提交失败：${explain(error)}`));
    } finally {
      button.disabled = false;
    }
  }
  return h(
    "section",
    { class: "card actions" },
    h("h2", null, "操作"),
    result,
    h("div", { class: "two-col" }, update, cancel),
  );
}

export default {
  title: "预警详情",
  async render(main, route, ctx) {
    const id = route.params[0];
    if (!/^\d+$/.test(id || "")) {
      fill(main, h("section", { class: "page" }, h("h1", null, "预警详情"), message("error", "预警编号无效。")));
      return;
    }
    const { data: alert } = await api(`/api/v1/alerts/${id}`, { signal: ctx.signal });
    let timeline = null;
    let timelineError = null;
    try {
      timeline = (await api(`/api/v1/alerts/${id}/timeline`, { signal: ctx.signal })).data;
    } catch (error) {
      if (error.name === "AbortError") throw error;
      timelineError = error;
    }
    const reload = () => ctx.go(`#/alerts/${id}`);
    const latest = (alert.revisions || []).at(-1);
    const isLatest = !latest || latest.id === alert.id;
    const byChannel = (timeline && timeline.deliveries) || null;
    const revisions = (alert.revisions || []).map((r) =>
      h(
        "tr",
        { class: r.id === alert.id ? "current" : null },
        h("td", null, h("a", { href: `#/alerts/${r.id}` }, `#${r.id}`)),
        h("td", null, MSG_TYPES[r.msg_type] || r.msg_type),
        h("td", null, colourTag(r.colour, r.colour_label, r.level_label, r.status)),
        h("td", null, r.headline || "—"),
        h("td", null, when(r.sent || r.received_at)),
        h("td", null, ALERT_STATES[r.state] || r.state),
      ),
    );
    let actionBlock = null;
    if (ctx.can("operator")) {
      if (alert.state === "active" && isLatest) actionBlock = actions(alert, ctx);
      else
        actionBlock = message(
          "info",
          isLatest
            ? `此预警${ALERT_STATES[alert.state] || alert.state}，无需操作。`
            : "这是旧的修订，请在最新修订上操作：",
          !isLatest ? h("a", { href: `#/alerts/${latest.id}` }, `预警 #${latest.id}`) : null,
        );
    }
    fill(
      main,
      h(
        "section",
        { class: "page alert-page" },
        h("p", { class: "crumbs" }, h("a", { href: "#/board" }, "值班看板"), " › ", `预警 #${alert.id}`),
        h(
          "article",
          { class: `card alert-card c-${alert.colour || "none"}`, dataset: { alertId: alert.id } },
          h("div", { class: "tags" }, colourTag(alert.colour, alert.colour_label, alert.level_label, alert.status)),
          h("h1", null, alert.headline || alert.event || `预警 #${alert.id}`),
          facts(alert),
          h("p", null, h("a", { class: "button quiet", href: `#/log?alert=${alert.id}` }, "查看全部发送记录")),
        ),
        actionBlock,
        h(
          "section",
          { class: "card" },
          h("h2", null, "发送情况（按渠道和状态）"),
          byChannel
            ? deliveryMatrix(byChannel, alert.id)
            : h(
                "p",
                { class: "muted" },
                "按渠道统计：",
                Object.entries(alert.deliveries || {})
                  .map(([s, n]) => `${DELIVERY_STATUS[s] || s} ${n}`)
                  .join("，") || "无",
              ),
        ),
        h(
          "section",
          { class: "card" },
          h("h2", null, "时间线"),
          timeline
            ? timelineList(timeline.events || [])
            : retryable(`时间线暂不可用：${explain(timelineError)}`, reload),
        ),
        revisions.length > 1
          ? h(
              "section",
              { class: "card" },
              h("h2", null, "修订记录"),
              table(["编号", "类型", "颜色", "标题", "时间", "状态"], revisions),
            )
          : null,
      ),
    );
  },
};
