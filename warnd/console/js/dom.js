// Building the page without HTML strings: every piece of text from the server becomes a text node
// (textContent), never markup. h("p", {class: "x"}, "文字", child) → <p class="x">文字…</p>.

const SVG_NS = "http://www.w3.org/2000/svg";
// set as DOM properties rather than attributes (their current state, not the initial one)
const PROPERTIES = new Set(["value", "checked", "disabled", "indeterminate", "selected", "hidden", "open"]);

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") {
      const names = Array.isArray(value) ? value.filter(Boolean).join(" ") : value;
      if (names) el.setAttribute("class", names);
    } else if (key === "dataset") {
      for (const [name, v] of Object.entries(value)) if (v !== null && v !== undefined) el.dataset[name] = String(v);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPERTIES.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element with attributes (class, dataset, on<event> handlers, properties) and children. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  add(el, children);
  return el;
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  add(el, children);
  return el;
}

/** Replace what ``el`` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/** A message box: kind "error" (role=alert, read out at once), "ok", "warn" or "info". */
export function message(kind, ...children) {
  return h("div", { class: `msg msg-${kind}`, role: kind === "error" ? "alert" : "status" }, ...children);
}

/** A column header for ``table`` whose cells are numbers (aligned right, like them). */
export function numeric(title) {
  return { numeric: title };
}

/** A table in a box that scrolls sideways on a narrow screen; a header made by ``numeric`` aligns right. */
export function table(headers, rows, attrs = {}) {
  const heads = headers.map((title) =>
    title && title.numeric !== undefined
      ? h("th", { scope: "col", class: "num" }, title.numeric)
      : h("th", { scope: "col" }, title),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h("table", attrs, h("thead", null, h("tr", null, heads)), h("tbody", null, rows)),
  );
}

/** A labelled form field: label above, the control below. */
/** A <select name> of ``[value, label]`` pairs with ``value`` chosen ("" when none). */
export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map(([v, label]) => h("option", { value: v, selected: v === (value || "") }, label)),
  );
}

export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { class: "hint" }, hint) : null,
  );
}

/** Run ``fn`` ``wait`` ms after the last call. */
export function debounce(fn, wait) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), wait);
  };
  debounced.cancel = () => clearTimeout(timer);
  return debounced;
}
