// 发送记录: GET /api/v1/deliveries with filters (alert, channel, status, village, time, phone suffix), newest
// first, keyset pages (下一页 = ?after=<next_after>). The filters live in the hash (#/log?channel=sms), so a
// filtered view can be bookmarked. 导出CSV is a plain link to the same query with format=csv: the browser
// downloads it with the session cookie (operators and above; phones masked).

import { queryString, api } from "./api.js";
import { composerOptions, flatten } from "./areas.js";
import { field, fill, h, numeric, select, table } from "./dom.js";
import { DELIVERY_STATUS, when } from "./format.js";
import { deliveryBadge, keysetList } from "./widgets.js";

const PAGE_SIZES = [20, 50, 100];
const PAGE_SIZE = 50;
const FILTERS = ["alert", "channel", "status", "village", "since", "until", "phone_suffix"];
const RANGES = [
  ["", "全部时间"],
  ["1h", "最近 1 小时"],
  ["6h", "最近 6 小时"],
  ["1d", "最近 24 小时"],
  ["7d", "最近 7 天"],
];
const AREA_INDENT = "\u3000"; // an ideographic space per level of the tree in the village list

function filtersOf(query) {
  return Object.fromEntries(FILTERS.filter((k) => query[k]).map((k) => [k, query[k]]));
}

function rowOf(d) {
  return h(
    "tr",
    { dataset: { deliveryId: d.id, status: d.status, channel: d.channel } },
    h("td", { class: "num" }, String(d.id)),
    h("td", { class: "nowrap" }, when(d.created_at)),
    h(
      "td",
      { class: "nowrap" },
      h("a", { href: `#/alerts/${d.alert_id}` }, `#${d.alert_id}`),
      d.colour ? h("span", { class: `dot c-${d.colour}`, title: d.colour }) : null,
      " ",
      d.event || "",
    ),
    h("td", { class: "nowrap" }, d.channel),
    h("td", null, deliveryBadge(d.status)),
    h("td", { class: "nowrap" }, d.recipient || "—"),
    h("td", { class: "nowrap phone" }, d.phone || "—"),
    h("td", { class: "nowrap" }, d.area_name || d.area_code || "—"),
    h("td", { class: "num" }, d.segments ?? "—"),
    h("td", { class: "num" }, String(d.attempts ?? 0)),
    h("td", { class: "nowrap" }, when(d.delivered_at || d.sent_at)),
    h("td", { class: "why" }, d.error ? h("span", { class: "error-text" }, d.error) : d.reason || ""),
    h(
      "td",
      { class: "body-cell" },
      d.body
        ? h(
            "details",
            null,
            h("summary", null, "内容"),
            h("p", { class: "script" }, d.title ? `${d.title}\n${d.body}` : d.body),
          )
        : "",
    ),
  );
}

export default {
  title: "发送记录",
  async render(main, route, ctx) {
    const query = route.query;
    const filters = filtersOf(query);
    const pageSize = PAGE_SIZES.includes(Number(query.limit)) ? Number(query.limit) : PAGE_SIZE;
    const [options, channelsAnswer] = await Promise.all([
      composerOptions(),
      api("/api/v1/channels", { signal: ctx.signal }).then(
        ({ data }) => data,
        () => null,
      ),
    ]);
    if (ctx.signal.aborted) return; // left while loading
    const channelNames = channelsAnswer ? channelsAnswer.channels.map((c) => c.name) : [];
    const areas = flatten(options ? options.areas : []);

    const alert = h("input", {
      name: "alert",
      inputmode: "numeric",
      pattern: "[0-9]*",
      value: filters.alert || "",
      placeholder: "预警编号",
    });
    const channel = select("channel", [["", "全部渠道"], ...channelNames.map((c) => [c, c])], filters.channel);
    const status = select("status", [["", "全部状态"], ...Object.entries(DELIVERY_STATUS)], filters.status);
    const village = areas.length
      ? select(
          "village",
          [["", "全部区域"], ...areas.map((a) => [a.code, AREA_INDENT.repeat(a.depth) + a.name])],
          filters.village,
        )
      : h("input", { name: "village", inputmode: "numeric", value: filters.village || "", placeholder: "区划代码" });
    const preset = RANGES.some(([v]) => v && v === filters.since) && !filters.until;
    const range = select(
      "range",
      [...RANGES, ["custom", "自定义…"]],
      preset ? filters.since : filters.since || filters.until ? "custom" : "",
    );
    const since = h("input", {
      type: "datetime-local",
      name: "since",
      value: preset ? "" : (filters.since || "").slice(0, 16),
    });
    const until = h("input", { type: "datetime-local", name: "until", value: (filters.until || "").slice(0, 16) });
    const custom = h("div", { class: "row", hidden: range.value !== "custom" }, field("从", since), field("到", until));
    range.addEventListener("change", () => (custom.hidden = range.value !== "custom"));
    const phone = h("input", {
      name: "phone_suffix",
      inputmode: "numeric",
      pattern: "[0-9]*",
      maxlength: 11,
      value: filters.phone_suffix || "",
      placeholder: "例如 5678",
    });
    const size = select(
      "limit",
      PAGE_SIZES.map((n) => [String(n), `每页 ${n} 条`]),
      String(pageSize),
    );

    const form = h(
      "form",
      { class: "card filters", id: "log-filters" },
      h(
        "div",
        { class: "filter-grid" },
        field("预警", alert),
        field("渠道", channel),
        field("状态", status),
        field("区域", village),
        field("时间", range),
        field("手机尾号", phone),
        field("每页", size),
      ),
      custom,
      h(
        "div",
        { class: "row" },
        h("button", { type: "submit", class: "primary" }, "查询"),
        h("a", { class: "button quiet", href: "#/log" }, "清除条件"),
      ),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = {
        alert: alert.value.trim(),
        channel: channel.value,
        status: status.value,
        village: village.value.trim(),
        phone_suffix: phone.value.trim(),
        limit: size.value === String(PAGE_SIZE) ? "" : size.value,
      };
      if (range.value === "custom") {
        next.since = since.value;
        next.until = until.value;
      } else {
        next.since = range.value;
      }
      ctx.go(`#/log${queryString(next)}`);
    });

    const csv = ctx.can("operator")
      ? h(
          "a",
          {
            class: "button",
            id: "export-csv",
            href: `/api/v1/deliveries${queryString({ ...filters, format: "csv" })}`,
            download: "",
          },
          "导出CSV",
        )
      : null;
    const body = h("div", { id: "log-results" }, h("p", { class: "loading" }, "正在查询…"));
    fill(
      main,
      h(
        "section",
        { class: "page log-page" },
        h("div", { class: "page-head" }, h("h1", null, "发送记录"), csv),
        form,
        csv ? h("p", { class: "hint" }, "导出的 CSV 包含当前筛选条件下的全部记录，手机号已脱敏。") : null,
        body,
      ),
    );

    const { load } = keysetList(body, {
      path: "/api/v1/deliveries",
      key: "deliveries",
      query: filters,
      pageSize,
      signal: ctx.signal,
      loading: "正在查询…",
      unit: "条",
      nextId: "log-next",
      render: (rows) =>
        rows.length
          ? table(
              [
                numeric("编号"),
                "生成时间",
                "预警",
                "渠道",
                "状态",
                "接收人",
                "手机",
                "区域",
                numeric("条数"),
                numeric("尝试"),
                "发送/送达",
                "说明",
                "内容",
              ],
              rows.map(rowOf),
              { class: "log-table", id: "log-table" },
            )
          : h("p", { class: "card empty" }, "没有符合条件的记录。"),
    });
    await load(0);
  },
};
