// 待审批: broadcasts waiting for a second person (GET /api/v1/broadcasts?status=pending). Approvers approve
// (with an optional note) or reject (a reason is required); the server refuses the submitter's own approval
// and that refusal is shown as it is. The submitter (or an admin) may withdraw. Below: recently decided ones.

import { api, explain } from "./api.js";
import { areaNames } from "./areas.js";
import { fill, h, message, table } from "./dom.js";
import { CAP_STATUS, number, STYLES, when } from "./format.js";
import { broadcastBadge, colourTag, retryable } from "./widgets.js";

const RECENT = 20;

function mine(broadcast, session) {
  const by = broadcast.submitted_by || "";
  return by === session.principal || by === session.user || by === `user:${session.user}`;
}

function who(principal) {
  return (principal || "—").replace(/^user:/, "").replace(/^token:/, "令牌 ");
}

function draftFacts(b, names) {
  const d = b.draft || {};
  const rows = [
    ["区域", (d.areas || []).map((code) => names.get(code) || code).join("、") || "—"],
    ["群组", (d.groups || []).join("、") || "—"],
    ["渠道", (d.channels || []).join("、") || "—"],
    ["状态", CAP_STATUS[d.status] || d.status || "正式"],
    ["接收", `${number(b.recipients)} 个`],
  ];
  return h(
    "dl",
    { class: "facts compact" },
    rows.map(([k, v]) => [h("dt", null, k), h("dd", null, v)]),
  );
}

function pendingCard(b, ctx, names) {
  const result = h("div", { class: "action-result", dataset: { result: b.id } });
  const own = mine(b, ctx.session);
  const busy = (on) => {
    for (const el of card.querySelectorAll("button, textarea, input")) el.disabled = on;
  };

  async function act(action, body, done) {
    busy(true);
    fill(result, h("p", { class: "loading" }, "正在提交…"));
    try {
      const { data } = await api(`/api/v1/broadcasts/${b.id}/${action}`, { method: "POST", body });
      fill(
        result,
        message(
          "ok",
          done,
          data.alert_id ? [" ", h("a", { href: `#/alerts/${data.alert_id}` }, `查看预警 #${data.alert_id}`)] : null,
        ),
      );
      for (const control of card.querySelectorAll(".decide, [data-action]")) control.remove();
      card.querySelector(".badge").replaceWith(broadcastBadge(data.status));
      ctx.refreshPending();
    } catch (error) {
      const refused = error.status === 403 && !/needs role/.test(error.message);
      fill(result, message("error", h("b", null, refused ? "服务器拒绝了此操作：" : "操作失败："), explain(error)));
      busy(false);
    }
  }

  const controls = [];
  if (ctx.can("approver")) {
    const note = h("input", { name: "note", placeholder: "审批意见（可选）", maxlength: 500 });
    const reason = h("textarea", { name: "reason", rows: 2, placeholder: "驳回原因（必填）", maxlength: 500 });
    controls.push(
      h(
        "div",
        { class: "decide" },
        own ? message("warn", "这是您本人提交的广播，须由另一位审批人批准。") : null,
        h(
          "div",
          { class: "row" },
          note,
          h(
            "button",
            {
              type: "button",
              class: "primary",
              dataset: { action: "approve" },
              onclick: () => act("approve", note.value.trim() ? { note: note.value.trim() } : {}, "已批准，正在发送。"),
            },
            "批准发送",
          ),
        ),
        h(
          "div",
          { class: "row" },
          reason,
          h(
            "button",
            {
              type: "button",
              class: "danger",
              dataset: { action: "reject" },
              onclick: () => {
                if (!reason.value.trim()) {
                  fill(result, message("error", "请填写驳回原因。"));
                  reason.focus();
                  return;
                }
                act("reject", { reason: reason.value.trim() }, "已驳回。");
              },
            },
            "驳回",
          ),
        ),
      ),
    );
  }
  if (ctx.can("operator") && (own || ctx.can("admin"))) {
    controls.push(
      h(
        "button",
        {
          type: "button",
          class: "quiet",
          dataset: { action: "withdraw" },
          onclick: () => act("withdraw", {}, "已撤回。"),
        },
        "撤回",
      ),
    );
  }
  const card = h(
    "article",
    { class: `card alert-card c-${b.colour || "none"}`, dataset: { broadcastId: b.id } },
    h(
      "div",
      { class: "tags" },
      colourTag(b.colour, b.colour_label, null, (b.draft || {}).status),
      broadcastBadge(b.status),
      h("span", { class: "muted" }, `广播 #${b.id}`),
    ),
    h("h2", null, b.headline || "（无标题）"),
    h("p", { class: "meta" }, `提交人 ${who(b.submitted_by)} · ${when(b.submitted_at)}`),
    b.approval_reasons && b.approval_reasons.length
      ? h(
          "div",
          { class: "msg msg-approval" },
          h("b", null, "需要审批的原因"),
          h(
            "ul",
            null,
            b.approval_reasons.map((r) => h("li", null, r)),
          ),
        )
      : null,
    draftFacts(b, names),
    h(
      "details",
      { class: "channels" },
      h("summary", null, `各渠道内容（${(b.channels || []).length}）`),
      (b.channels || []).map((c) =>
        h(
          "div",
          { class: "channel-preview" },
          h(
            "div",
            { class: "cp-head" },
            h("b", null, c.channel),
            h("span", { class: "tag" }, STYLES[c.style] || c.style || ""),
            h("span", null, `接收 ${number(c.recipients)}`),
          ),
          c.title ? h("b", null, c.title) : null,
          h("p", { class: "script" }, c.body),
        ),
      ),
    ),
    controls,
    result,
  );
  return card;
}

export default {
  title: "待审批",
  async render(main, route, ctx) {
    const pendingBox = h("div", { id: "pending-list" }, h("p", { class: "loading" }, "正在加载…"));
    const recentBox = h("div", { id: "recent-list" });
    const reload = () => ctx.go("#/approvals");
    fill(
      main,
      h(
        "section",
        { class: "page approvals-page" },
        h(
          "div",
          { class: "page-head" },
          h("h1", null, "待审批"),
          h("button", { type: "button", class: "quiet", onclick: reload }, "刷新"),
        ),
        ctx.can("approver") ? null : message("info", "您可以查看待审批的广播；批准或驳回需要审批人角色。"),
        pendingBox,
        h("h2", null, "最近处理"),
        recentBox,
      ),
    );
    try {
      const { data } = await api("/api/v1/broadcasts", { query: { status: "pending" }, signal: ctx.signal });
      const pending = data.broadcasts || [];
      const names = await areaNames();
      ctx.setPending(pending.length);
      fill(
        pendingBox,
        pending.length
          ? pending.map((b) => pendingCard(b, ctx, names))
          : h("div", { class: "card empty" }, h("p", { class: "big-ok" }, "没有等待审批的广播")),
      );
    } catch (error) {
      if (error.name === "AbortError") return;
      fill(pendingBox, retryable(`加载失败：${explain(error)}`, reload));
      return;
    }
    try {
      const { data } = await api("/api/v1/broadcasts", { signal: ctx.signal });
      const decided = (data.broadcasts || []).filter((b) => b.status !== "pending").slice(0, RECENT);
      fill(
        recentBox,
        decided.length
          ? table(
              ["编号", "标题", "状态", "提交人", "处理人", "处理时间", "预警"],
              decided.map((b) =>
                h(
                  "tr",
                  { dataset: { broadcastId: b.id } },
                  h("td", null, `#${b.id}`),
                  h("td", null, b.headline || "—"),
                  h("td", null, broadcastBadge(b.status)),
                  h("td", null, who(b.submitted_by)),
                  h("td", null, who(b.decided_by), b.note ? h("small", { class: "muted block" }, b.note) : null),
                  h("td", null, when(b.decided_at)),
                  h("td", null, b.alert_id ? h("a", { href: `#/alerts/${b.alert_id}` }, `#${b.alert_id}`) : "—"),
                ),
              ),
            )
          : h("p", { class: "muted" }, "暂无。"),
      );
    } catch (error) {
      if (error.name !== "AbortError") fill(recentBox, message("error", explain(error)));
    }
  },
};
