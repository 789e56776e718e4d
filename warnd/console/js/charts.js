// Bar charts drawn as inline SVG (no library): horizontal bars for shares per name (with an optional target
// line) and vertical bars for a histogram. Text is SVG <text> (textContent), sized by the viewBox so the
// charts scale with the card on a phone.

import { s } from "./dom.js";

/** The drawing width: narrower on a phone, so that text keeps its size when the chart is scaled to fit. */
function chartWidth() {
  return window.innerWidth < 700 ? 380 : 640;
}

/** ``text`` cut to about ``max`` Chinese characters' width (a Latin letter or digit counts as half). */
function shorten(text, max) {
  const value = String(text ?? "");
  let used = 0;
  for (let i = 0; i < value.length; i += 1) {
    used += value.charCodeAt(i) < 0x2e80 ? 0.55 : 1;
    if (used > max) return `${value.slice(0, Math.max(1, i - 1))}…`;
  }
  return value;
}

/**
 * Horizontal bars: items [{label, value (0..1), text, cls}], a vertical dashed line at ``target`` (0..1).
 * ``title`` is read out by screen readers.
 */
export function shareBars(items, { title, target = null, targetLabel = "", bar = 22, gap = 10 } = {}) {
  const width = chartWidth();
  const top = target === null ? 8 : 26;
  const labelWidth = width < 640 ? 80 : 130;
  const valueWidth = width < 640 ? 120 : 150;
  const plot = width - labelWidth - valueWidth;
  const height = top + items.length * (bar + gap) + 4;
  const x = (v) => labelWidth + Math.max(0, Math.min(1, v || 0)) * plot;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title),
  );
  for (const tick of [0, 0.5, 1])
    svg.append(s("line", { x1: x(tick), x2: x(tick), y1: top - 4, y2: height - 2, class: "grid" }));
  items.forEach((item, i) => {
    const y = top + i * (bar + gap);
    svg.append(
      s(
        "text",
        { x: labelWidth - 8, y: y + bar / 2, class: "label", "text-anchor": "end", "dominant-baseline": "middle" },
        shorten(item.label, width < 640 ? 5 : 9),
      ),
      s("rect", { x: labelWidth, y, width: plot, height: bar, class: "track", rx: 3 }),
      s(
        "rect",
        {
          x: labelWidth,
          y,
          width: Math.max(0, x(item.value) - labelWidth),
          height: bar,
          class: `fill ${item.cls || ""}`,
          rx: 3,
        },
        s("title", null, `${item.label}：${item.text}`),
      ),
      s("text", { x: labelWidth + plot + 8, y: y + bar / 2, class: "value", "dominant-baseline": "middle" }, item.text),
    );
  });
  if (target !== null) {
    svg.append(
      s("line", { x1: x(target), x2: x(target), y1: 14, y2: height - 2, class: "target" }),
      s("text", { x: x(target), y: 10, class: "target-label", "text-anchor": "middle" }, targetLabel),
    );
  }
  return svg;
}

/** Vertical bars: buckets [{label, count}]. */
export function histogram(buckets, { title, height = 220 } = {}) {
  const width = chartWidth();
  const left = 44;
  const bottom = 40;
  const top = 16;
  const plot = width - left - 8;
  const max = Math.max(1, ...buckets.map((b) => b.count || 0));
  const step = plot / Math.max(1, buckets.length);
  const y = (v) => top + (1 - v / max) * (height - top - bottom);
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title },
    s("title", null, title),
  );
  for (const tick of [0, Math.round(max / 2), max]) {
    svg.append(
      s("line", { x1: left, x2: width - 8, y1: y(tick), y2: y(tick), class: "grid" }),
      s(
        "text",
        { x: left - 6, y: y(tick), class: "label", "text-anchor": "end", "dominant-baseline": "middle" },
        String(tick),
      ),
    );
  }
  buckets.forEach((b, i) => {
    const x = left + i * step + step * 0.15;
    const w = step * 0.7;
    svg.append(
      s(
        "rect",
        {
          x,
          y: y(b.count || 0),
          width: w,
          height: Math.max(0, height - bottom - y(b.count || 0)),
          class: "fill",
          rx: 2,
        },
        s("title", null, `${b.label}：${b.count} 条`),
      ),
      s(
        "text",
        { x: x + w / 2, y: height - bottom + 16, class: "label", "text-anchor": "middle" },
        shorten(b.label, width < 640 ? 5 : 7),
      ),
      b.count
        ? s("text", { x: x + w / 2, y: y(b.count) - 4, class: "value", "text-anchor": "middle" }, String(b.count))
        : null,
    );
  });
  return svg;
}
