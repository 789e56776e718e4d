// Small pieces several pages show the same way: colour tags, progress bars, status badges, keyset-paged lists.

import { api, explain } from "./api.js";
import { fill, h, message } from "./dom.js";
import { BROADCAST_STATUS, CAP_STATUS, colourLabel, DELIVERY_STATUS, percent, share } from "./format.js";

/** "红色 Ⅰ级" on the colour itself (plus 演练/测试 when it is not a real warning). */
export function colourTag(colour, colourText, levelText, status) {
  const drill = status && status !== "Actual";
  return [
    h(
      "span",
      { class: `colour-tag c-${colour || "none"}` },
      [colourLabel(colour, colourText), levelText].filter(Boolean).join(" "),
    ),
    drill ? h("span", { class: "tag tag-drill" }, CAP_STATUS[status] || status) : null,
  ];
}

/** A bar n/total with its numbers; ``below`` marks it as under the target. ``key`` names it for tests. */
export function progress(label, n, total, { key, below = false } = {}) {
  const part = share(n, total);
  const fillBar = h("span", { class: "bar-fill" });
  fillBar.style.width = `${Math.min(100, Math.round((part || 0) * 1000) / 10)}%`;
  return h(
    "div",
    { class: ["progress", below ? "below" : null], dataset: { progress: key } },
    h(
      "div",
      { class: "progress-text" },
      h("span", { class: "progress-label" }, label),
      h(
        "span",
        { class: "progress-nums" },
        h("b", { dataset: { count: key } }, String(n ?? 0)),
        `/${total ?? 0}`,
        part === null ? "" : `（${percent(part)}）`,
      ),
    ),
    h("span", { class: "bar", role: "presentation" }, fillBar),
  );
}

/** A number with its label underneath (a stat tile). */
export function stat(label, value, key, kind) {
  return h(
    "div",
    { class: ["stat", kind ? `stat-${kind}` : null] },
    h("b", { dataset: { stat: key } }, String(value ?? 0)),
    h("span", null, label),
  );
}

export function deliveryBadge(status) {
  return h("span", { class: `badge s-${status}` }, DELIVERY_STATUS[status] || status);
}

export function broadcastBadge(status) {
  return h("span", { class: `badge b-${status}` }, BROADCAST_STATUS[status] || status);
}

/** "加载失败" with a retry button. */
export function retryable(text, retry) {
  return h(
    "div",
    { class: "msg msg-error", role: "alert" },
    h("span", null, text),
    " ",
    h("button", { type: "button", class: "quiet", onclick: retry }, "重试"),
  );
}

/**
 * A list the server pages by key (``?after=<next_after>``), shown in ``into``: ``render(rows)`` draws one page,
 * a pager (上一页/下一页, "第 n 页 · 本页 m <unit>") goes under it. A 400 means the filters are wrong (no retry),
 * other failures offer 重试. ``loading`` (if given) is shown while each page loads. Returns ``load(after)``
 * (0 = the first page) and ``reload()`` (the page shown now).
 */
export function keysetList(into, { path, key, query, pageSize, signal, render, unit, nextId, loading }) {
  const pages = []; // the `after` of each page shown before this one
  let current = 0;
  async function load(after) {
    current = after || 0;
    if (loading) fill(into, h("p", { class: "loading" }, loading));
    let data;
    try {
      data = (await api(path, { query: { ...query, limit: pageSize, after: after || "" }, signal })).data;
    } catch (error) {
      if (error.name === "AbortError") return;
      fill(
        into,
        error.status === 400
          ? message("error", `查询条件有误：${explain(error)}`)
          : retryable(`查询失败：${explain(error)}`, () => load(after)),
      );
      return;
    }
    const rows = data[key] || [];
    fill(
      into,
      render(rows),
      h(
        "div",
        { class: "pager" },
        h(
          "button",
          { type: "button", class: "quiet", disabled: !pages.length, onclick: () => load(pages.pop()) },
          "上一页",
        ),
        h("span", { class: "muted" }, `第 ${pages.length + 1} 页 · 本页 ${rows.length} ${unit}`),
        h(
          "button",
          {
            type: "button",
            class: "quiet",
            id: nextId,
            disabled: !data.next_after,
            onclick: () => {
              pages.push(after || 0);
              load(data.next_after);
            },
          },
          "下一页",
        ),
      ),
    );
  }
  return { load, reload: () => load(current) };
}
