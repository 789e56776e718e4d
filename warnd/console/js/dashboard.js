// 统计: GET /api/v1/dashboard?days=N — coverage by village against the target, how long deliveries took,
// each channel's success rate, and whether the warning feeds are healthy. Charts are SVG drawn here.

import { api, explain } from "./api.js";
import { histogram, shareBars } from "./charts.js";
import { fill, h, numeric, table } from "./dom.js";
import { COLOUR_LABELS, COLOURS, duration, FEED_STATES, number, percent, when } from "./format.js";
import { retryable } from "./widgets.js";

const DAYS = [1, 7, 30];
const DEFAULT_TARGET = 0.9; // feedback.coverage_target of the example config; the answer's own wins

/** A bucket's label: the server's ("≤30秒"), else made from its upper bound. */
function bucketLabel(bucket, previous) {
  if (bucket.label) return bucket.label;
  return bucket.le_seconds === null || bucket.le_seconds === undefined
    ? `>${duration(previous)}`
    : `≤${duration(bucket.le_seconds)}`;
}

function card(title, ...content) {
  return h("section", { class: "card chart-card" }, h("h2", null, title), ...content);
}

function feedRows(feeds) {
  return feeds.map((f) =>
    h(
      "tr",
      { class: f.stale || f.state === "failing" ? "below" : null },
      h("th", { scope: "row" }, f.name),
      h(
        "td",
        null,
        h("span", { class: `badge f-${(f.state || "").replace(" ", "-")}` }, FEED_STATES[f.state] || f.state),
      ),
      h("td", { class: "nowrap" }, when(f.last_success)),
      h("td", { class: "num" }, f.consecutive_failures ? String(f.consecutive_failures) : "0"),
      h("td", { class: "why" }, f.last_error || ""),
    ),
  );
}

export default {
  title: "统计",
  async render(main, route, ctx) {
    const days = DAYS.includes(Number(route.query.days)) ? Number(route.query.days) : 7;
    const picker = h(
      "div",
      { class: "segmented", role: "group", "aria-label": "统计时段" },
      DAYS.map((d) =>
        h(
          "a",
          {
            class: ["button", "quiet", d === days ? "active" : null],
            href: `#/dashboard?days=${d}`,
            "aria-current": d === days ? "true" : null,
          },
          d === 1 ? "24 小时" : `${d} 天`,
        ),
      ),
    );
    const body = h("div", { class: "dash-grid" }, h("p", { class: "loading" }, "正在加载…"));
    fill(
      main,
      h(
        "section",
        { class: "page dashboard-page" },
        h("div", { class: "page-head" }, h("h1", null, "统计"), picker),
        body,
      ),
    );
    let data;
    try {
      data = (await api("/api/v1/dashboard", { query: { days }, signal: ctx.signal })).data;
    } catch (error) {
      if (error.name === "AbortError") return;
      fill(
        body,
        retryable(`加载失败：${explain(error)}`, () => ctx.go(`#/dashboard?days=${days}`)),
      );
      return;
    }
    const target = data.coverage_target ?? DEFAULT_TARGET;
    const villages = data.coverage_by_village || [];
    const ttd = data.time_to_delivery || { buckets: [] };
    const channels = data.channels || [];
    const feeds = data.feeds || [];
    const colours = data.alerts_by_colour || {};
    fill(
      body,
      h(
        "section",
        { class: "card span-all" },
        h(
          "h2",
          null,
          `预警数量：${number(data.alerts ?? COLOURS.reduce((n, c) => n + (colours[c] || 0), 0))} 条（正式预警，不含演练）`,
        ),
        h("p", { class: "muted" }, `${when(data.since)} 至 ${when(data.until)}`),
        h(
          "div",
          { class: "colour-summary" },
          COLOURS.map((c) =>
            h("span", { class: `colour-count c-${c}` }, `${COLOUR_LABELS[c]} ${number(colours[c] || 0)}`),
          ),
        ),
      ),
      card(
        "各村覆盖率",
        villages.length
          ? shareBars(
              villages.map((v) => ({
                label: v.name || v.code,
                value: v.coverage,
                text: `${percent(v.coverage)}（${v.reached}/${v.targeted}）`,
                cls: v.coverage !== null && v.coverage < target ? "bad" : "good",
              })),
              { title: `各村覆盖率，目标 ${percent(target)}`, target, targetLabel: `目标 ${percent(target)}` },
            )
          : h("p", { class: "muted" }, "此时段没有发往各村的预警。"),
      ),
      card(
        "送达用时分布",
        (ttd.buckets || []).length
          ? histogram(
              ttd.buckets.map((b, i) => ({
                label: bucketLabel(b, i ? ttd.buckets[i - 1].le_seconds : 0),
                count: b.count,
              })),
              { title: "从发布到送达的用时分布" },
            )
          : h("p", { class: "muted" }, "暂无送达记录。"),
        h(
          "p",
          { class: "quantiles" },
          `中位数 ${duration(ttd.p50)} · 90% 在 ${duration(ttd.p90)} 内 · 99% 在 ${duration(ttd.p99)} 内`,
        ),
      ),
      card(
        "各渠道成功率",
        channels.length
          ? shareBars(
              channels.map((c) => ({
                label: c.channel,
                value: c.success_rate,
                text: `${percent(c.success_rate)}（失败 ${c.failed}）`,
                cls: c.success_rate !== null && c.success_rate < target ? "bad" : "good",
              })),
              { title: "各渠道发送成功率" },
            )
          : h("p", { class: "muted" }, "暂无发送记录。"),
        channels.length
          ? table(
              ["渠道", ...["发送", "送达", "失败", "成功率"].map(numeric)],
              channels.map((c) =>
                h(
                  "tr",
                  null,
                  h("th", { scope: "row" }, c.channel),
                  h("td", { class: "num" }, number(c.sent)),
                  h("td", { class: "num" }, number(c.delivered)),
                  h("td", { class: "num" }, number(c.failed)),
                  h("td", { class: "num" }, percent(c.success_rate)),
                ),
              ),
            )
          : null,
      ),
      card(
        "数据源状态",
        feeds.length
          ? table(["数据源", "状态", "最近成功", numeric("连续失败"), "最近错误"], feedRows(feeds))
          : h("p", { class: "muted" }, "未配置预警数据源。"),
      ),
    );
  },
};
