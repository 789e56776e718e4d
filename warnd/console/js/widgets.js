// Small pieces several pages show the same way: colour tags, progress bars, status badges.

import { h } from "./dom.js";
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
