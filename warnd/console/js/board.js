// 值班看板: the active warnings, red first, each with its delivery, 叫应 and 敲门 progress and its villages.
// Live: GET /api/v1/events (server-sent events, "board" events carry the whole board); if the stream cannot
// be opened, GET /api/v1/board every POLL_MS instead. Never reloads the page.

import { api, explain } from "./api.js";
import { fill, h, message, numeric, table } from "./dom.js";
import { ago, ALERT_STATES, COLOUR_LABELS, COLOURS, MSG_TYPES, percent, ratio, when } from "./format.js";
import { colourTag, progress, stat } from "./widgets.js";

const POLL_MS = 5000;
// alert chains whose village table the officer opened or closed (kept across live updates); a chain with a
// village below target opens by itself until it is closed
const opened = new Set();
const closed = new Set();

function villageRows(villages) {
  return villages.map((v) =>
    h(
      "tr",
      { class: v.below_target ? "below" : null, dataset: { village: v.code } },
      h("td", null, v.township_name || "—"),
      h(
        "th",
        { scope: "row" },
        v.name || v.code,
        v.below_target ? h("span", { class: "tag tag-below" }, "未达标") : null,
      ),
      h("td", { class: "num" }, ratio(v.reached, v.targeted)),
      h("td", { class: "num" }, percent(v.coverage)),
      h("td", { class: "num" }, ratio(v.acknowledged, v.ack_required)),
      h("td", { class: "num" }, ratio(v.doorknock_done, v.doorknock_households)),
    ),
  );
}

function alertCard(alert) {
  const p = alert.progress || {};
  const acks = alert.acks || {};
  const knock = alert.doorknock || {};
  const villages = alert.villages || [];
  const below = villages.filter((v) => v.below_target);
  const chain = alert.root_id || alert.id;
  const details = h(
    "details",
    { class: "villages", open: opened.has(chain) || (below.length > 0 && !closed.has(chain)) },
    h(
      "summary",
      null,
      `各村进度：${villages.length} 个村`,
      below.length ? h("span", { class: "tag tag-below" }, `${below.length} 个未达标`) : null,
    ),
    villages.length
      ? table(["乡镇", "村", ...["送达/应发", "覆盖率", "叫应", "敲门"].map(numeric)], villageRows(villages), {
          class: "village-table",
        })
      : h("p", { class: "muted" }, "暂无按村统计。"),
  );
  details.addEventListener("toggle", () => {
    (details.open ? opened : closed).add(chain);
    (details.open ? closed : opened).delete(chain);
  });
  const kind =
    alert.msg_type && alert.msg_type !== "Alert"
      ? h("span", { class: "tag" }, MSG_TYPES[alert.msg_type] || alert.msg_type)
      : null;
  return h(
    "article",
    { class: `card alert-card c-${alert.colour || "none"}`, dataset: { alertId: alert.id, root: chain } },
    h(
      "div",
      { class: "card-head" },
      h("div", { class: "tags" }, colourTag(alert.colour, alert.colour_label, alert.level_label, alert.status), kind),
      h("h2", null, h("a", { href: `#/alerts/${alert.id}` }, alert.headline || alert.event || `预警 #${alert.id}`)),
      h(
        "p",
        { class: "meta" },
        [
          alert.area_desc,
          alert.state && ALERT_STATES[alert.state],
          `生效 ${when(alert.effective || alert.received_at)}`,
          alert.expires ? `至 ${when(alert.expires)}` : null,
        ]
          .filter(Boolean)
          .join(" · "),
      ),
    ),
    h(
      "div",
      { class: "card-body" },
      progress("已触达", p.reached, p.targeted, { key: "reached", below: below.length > 0 }),
      h(
        "div",
        { class: "stats" },
        stat("已送达（回执）", p.delivered, "delivered", "ok"),
        stat("已发送", p.sent, "sent"),
        stat("排队中", p.queued, "queued"),
        stat("失败", p.failed, "failed", p.failed ? "bad" : null),
      ),
      progress("叫应", acks.acknowledged, acks.required, { key: "acknowledged" }),
      progress("敲门", knock.done, knock.households, { key: "doorknock" }),
      details,
    ),
  );
}

function summary(alerts) {
  const counts = Object.fromEntries(COLOURS.map((c) => [c, 0]));
  for (const alert of alerts) if (alert.colour in counts) counts[alert.colour] += 1;
  return h(
    "div",
    { class: "colour-summary" },
    COLOURS.map((c) =>
      h("span", { class: `colour-count c-${c}`, dataset: { colourCount: c } }, `${COLOUR_LABELS[c]} ${counts[c]}`),
    ),
  );
}

export default {
  title: "值班看板",
  render(main, route, ctx) {
    const status = h("span", { class: "live", id: "live-status" }, "正在连接…");
    const updated = h("span", { class: "muted" });
    const pending = h("div");
    const list = h("div", { class: "alerts", id: "board-alerts" }, h("p", { class: "loading" }, "正在加载…"));
    const head = h(
      "div",
      { class: "page-head" },
      h("h1", null, "值班看板"),
      h("div", { class: "live-box" }, status, updated),
    );
    fill(main, h("section", { class: "page board-page" }, head, pending, list));

    let source = null;
    let timer = null;
    let lastAt = null;
    let left = false;

    function live(kind, text) {
      status.className = `live live-${kind}`;
      status.textContent = text;
    }

    function show(board) {
      const alerts = board.alerts || [];
      lastAt = board.generated_at || null;
      updated.textContent = lastAt ? `数据时间 ${when(lastAt, { full: true }).slice(11)}` : "";
      if (typeof board.pending_broadcasts === "number") ctx.setPending(board.pending_broadcasts);
      fill(
        pending,
        board.pending_broadcasts
          ? message(
              "warn",
              `有 ${board.pending_broadcasts} 条广播等待第二人审批。`,
              " ",
              h("a", { href: "#/approvals" }, "去审批"),
            )
          : null,
      );
      if (!alerts.length) {
        fill(
          list,
          h(
            "div",
            { class: "card empty" },
            h("p", { class: "big-ok" }, "当前没有生效的预警"),
            h("p", { class: "muted" }, "新的预警会自动出现在这里，无需刷新。"),
          ),
        );
        return;
      }
      fill(list, summary(alerts), alerts.map(alertCard));
    }

    async function poll() {
      try {
        const { data } = await api("/api/v1/board", { signal: ctx.signal });
        show(data);
        live("poll", "定时刷新中");
      } catch (error) {
        if (error.name === "AbortError") return;
        live("down", `刷新失败：${explain(error)}`);
      }
      if (!left) timer = setTimeout(poll, POLL_MS);
    }

    function stream() {
      if (!("EventSource" in window)) return poll();
      source = new EventSource("/api/v1/events");
      source.addEventListener("open", () => live("ok", "实时连接"));
      source.addEventListener("board", (event) => {
        try {
          show(JSON.parse(event.data));
          live("ok", "实时连接");
        } catch (error) {
          console.error("bad board event", error);
        }
      });
      source.addEventListener("error", () => {
        if (left) return;
        if (source.readyState === EventSource.CLOSED) {
          // refused (no such endpoint, a proxy that buffers, a session that ended): poll instead
          source.close();
          source = null;
          live("poll", "定时刷新中");
          poll();
        } else {
          live("down", lastAt ? `连接中断，正在重连…（最后数据 ${ago(lastAt)}）` : "连接中断，正在重连…");
        }
      });
    }

    ctx.onLeave(() => {
      left = true;
      if (source) source.close();
      clearTimeout(timer);
    });
    stream();
  },
};
